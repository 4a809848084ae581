"""The dashboard's pages, one script each (``app.py`` declares them with ``st.Page``), and the sections a page
shows that are long enough for a module of their own (``member_codes``, on the Organiser page)."""
