"""Streamlit dashboard (see leaderboard/app.py)."""
