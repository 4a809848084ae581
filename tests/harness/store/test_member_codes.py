"""Members' personal codes, entry owners and the upload log (harness.store.members), on SQLite and PostgreSQL: only a
salted scrypt hash is stored, a code verifies until revoked, the hourly count survives a new engine (a restart)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from harness.errors import HarnessError
from harness.store import audit, members
from harness.store.engine import make_engine
from harness.store.schema import MemberCode, utcnow


def test_a_code_is_stored_as_a_salted_scrypt_hash_never_in_plain_text(engine, db_url):
    code = members.issue_code(engine, "  Ada ")
    ident, _, secret = code.partition("-")
    assert ident.isdigit() and len(secret) == 20  # 15 random bytes, URL-safe base64
    with Session(engine) as session:
        row = session.scalars(select(MemberCode)).one()
    assert row.member == "Ada" and row.id == int(ident)
    # the stored hash is scrypt of the secret with the row's salt (computed here independently)
    expected = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(row.salt), n=2 ** 14, r=8, p=1, dklen=32).hex()
    assert row.code_hash == expected
    with engine.connect() as connection:  # the secret appears nowhere in the table's stored values
        stored = " ".join(str(v) for r in connection.execute(text("SELECT * FROM member_codes")) for v in r)
    assert secret not in stored and code not in stored
    other = members.issue_code(engine, "Ada")  # a second code for the same member: another salt and hash
    with Session(engine) as session:
        salts = set(session.scalars(select(MemberCode.salt)))
    assert other != code and len(salts) == 2


def test_verify_names_the_member_and_revoke_ends_the_code(engine):
    ada, bob = members.issue_code(engine, "Ada"), members.issue_code(engine, "Bob")
    assert members.verify_code(engine, ada) == "Ada" and members.verify_code(engine, f"  {bob}\n") == "Bob"
    ident, _, secret = ada.partition("-")
    wrong = f"{ident}-{secret[:-1]}x" if secret[-1] != "x" else f"{ident}-{secret[:-1]}y"
    assert members.verify_code(engine, wrong) is None
    assert members.verify_code(engine, f"{bob.partition('-')[0]}-{secret}") is None  # Ada's secret, Bob's id
    for junk in ("", "-", "abc", "99-" + secret, "1" * 40 + "-x"):
        assert members.verify_code(engine, junk) is None
    revoked = members.revoke_code(engine, int(ident))
    assert revoked.member == "Ada" and revoked.revoked_at is not None
    assert members.verify_code(engine, ada) is None and members.verify_code(engine, bob) == "Bob"
    listed = {c.id: c for c in members.codes(engine)}
    assert listed[int(ident)].revoked_at is not None and listed[int(bob.partition("-")[0])].last_used_at is not None
    with pytest.raises(HarnessError, match="^no code with id 999; the codes are listed on the Organiser page.$"):
        members.revoke_code(engine, 999)
    with pytest.raises(HarnessError, match="^give the member's name"):
        members.issue_code(engine, "   ")


def test_an_entry_belongs_to_its_first_claimant_in_any_case(engine):
    assert members.claim_entry(engine, "Ada-CNN", "Ada")
    assert not members.claim_entry(engine, "ada-cnn", "Bob")  # names clash in any case, as folders do
    assert members.owner(engine, "ADA-cnn") == "Ada"
    members.give_entry(engine, "ada-cnn", "Bob")  # the organiser decides otherwise
    assert members.owner(engine, "Ada-CNN") == "Bob" and members.owners(engine) == {"ada-cnn": "Bob"}


def test_the_hourly_count_is_stored_and_counts_checked_uploads_only(engine, db_url):
    start = utcnow()
    members.log_upload(engine, "Ada", "a", 10, "accepted", content_hash="f" * 64)
    members.log_upload(engine, "Ada", "a", 10, "failed", "the weights do not fit")
    members.log_upload(engine, "Ada", "a", 10, "refused", "bad name")
    members.log_upload(engine, "Bob", "b", 10, "accepted")
    engine.dispose()
    again = make_engine(db_url)  # a restarted dashboard
    try:
        assert len(members.checked_since(again, "Ada", start - timedelta(seconds=1))) == 2
        assert members.checked_since(again, "Ada", utcnow() + timedelta(seconds=1)) == []
        assert [u["outcome"] for u in members.uploads(again)] == ["accepted", "refused", "failed", "accepted"]
    finally:
        again.dispose()


def audit_counts(engine) -> dict[str, int]:
    return dict(Counter(row["action"] for row in audit.audit_log(engine, 1000)))


def test_guessing_codes_in_a_loop_is_limited_per_member_and_logged(engine):
    """The cheat: one address types 25 guesses at Ada's code in a second. The first 10 are checked and refused as
    wrong; then every code is refused unchecked, her right one included, with one sentence saying when to retry
    (a minute after the oldest of the 10); another address is refused too (the limit is Ada's as well); a minute
    later her code works again. The audit log counts each wrong code and the limit once."""
    ada, bob = members.issue_code(engine, "Ada"), members.issue_code(engine, "Bob")
    ident = ada.partition("-")[0]
    start = utcnow().replace(microsecond=0)
    said = [members.check_code(engine, f"{ident}-guess{i}", "203.0.113.9", now=start + timedelta(milliseconds=40 * i))
            for i in range(25)]
    assert [c.problem for c in said[:10]] == [members.NOT_VALID] * 10 and all(c.member is None for c in said)
    again = f"{start + timedelta(minutes=1):%H:%M:%S}"
    limited = (f"Too many wrong codes from your address and for this code's member in the last minute; try again "
               f"after {again} UTC.")
    assert [c.problem for c in said[10:]] == [limited] * 15
    assert members.check_code(engine, ada, "203.0.113.9", now=start + timedelta(seconds=2)).problem == limited
    elsewhere = members.check_code(engine, ada, "198.51.100.7", now=start + timedelta(seconds=2))
    assert elsewhere == members.CodeCheck(None, "Too many wrong codes for this code's member in the last minute; "
                                                f"try again after {again} UTC.")
    assert members.check_code(engine, bob, "198.51.100.7", now=start + timedelta(seconds=3)).member == "Bob"
    assert audit_counts(engine) == {"code-wrong": 10, "code-limited": 1}  # the limit: once a minute, not per try
    wrong = [r["detail"] for r in audit.audit_log(engine)
             if r["action"] == "code-wrong"]
    assert wrong[0] == f"wrong code typed for code {ident} (Ada), from 203.0.113.9"
    later = start + timedelta(minutes=1, seconds=1)
    assert members.check_code(engine, ada, "203.0.113.9", now=later) == members.CodeCheck("Ada")


def test_guessing_ids_from_one_address_is_limited_per_address(engine):
    """Guesses that name no member's code (made-up ids) count against the address alone."""
    ada = members.issue_code(engine, "Ada")
    start = utcnow()
    for i in range(10):
        assert members.check_code(engine, f"{900 + i}-x", None, now=start).problem == members.NOT_VALID
    assert members.check_code(engine, ada, None, now=start).problem.startswith(
        "Too many wrong codes from your address in the last minute; try again after ")
    assert members.check_code(engine, ada, "198.51.100.7", now=start) == members.CodeCheck("Ada")
    assert audit_counts(engine) == {"code-wrong": 10, "code-limited": 1}
    assert "wrong code typed for no member's code, from local" in [
        r["detail"] for r in audit.audit_log(engine)]


@pytest.mark.slow
def test_the_limit_holds_across_dashboard_processes(engine, db_url, tmp_path):
    """Ten wrong codes typed in another process (another dashboard server) limit this one: the count is stored."""
    ada = members.issue_code(engine, "Ada")
    ident = ada.partition("-")[0]
    script = ("import sys\nfrom harness.store import members\nfrom harness.store.engine import make_engine\n"
              "e = make_engine(sys.argv[1])\n"
              "print(sum(members.check_code(e, f'{sys.argv[2]}-no{i}', '203.0.113.9').problem == members.NOT_VALID "
              "for i in range(10)))")
    out = subprocess.run([sys.executable, "-c", script, db_url, ident], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "10"
    fresh = make_engine(db_url)  # and a restart of this one resets nothing
    try:
        assert members.check_code(fresh, ada, "198.51.100.7").problem.startswith(
            "Too many wrong codes for this code's member in the last minute")
    finally:
        fresh.dispose()
