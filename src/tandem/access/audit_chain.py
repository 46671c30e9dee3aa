"""The audit trail's hash chain: sealing new entries in batches, and checking the whole chain.

A request adds its audit entries unchained, in its own unit of work (no extra statement, no
shared row to wait for). The sealer (the `audit.seal` scheduled job, and `tandem audit verify`
before it checks) then takes every entry not yet sealed, in id order, and appends one row per
entry to `audit_chain`:

    chain_hash(entry) = sha256(chain_hash(previous sealed entry) + "\\n" + content(entry))

where content is the entry's fields and the patients it showed, as canonical JSON, and the first
entry's previous hash is GENESIS. Both tables refuse UPDATE, DELETE, REPLACE and TRUNCATE.

Ids are handed out before commit, so on PostgreSQL an entry with a lower id can commit after one
with a higher id. The sealer never chains past an entry still to commit: `audit_horizon()` takes
a SHARE lock on audit_entries (it waits for every transaction that inserted entries to end, and
for at most LOCK_TIMEOUT) and returns the highest id, then releases it; every id up to that is
final. On SQLite one writer at a time makes the highest id the horizon. So an unsealed entry with
a lower id than a sealed one was put there afterwards, and `verify` says so.

What the chain detects: a sealed entry changed (its hash no longer follows), deleted (the next
one no longer follows, or its link has no entry), or inserted between sealed ones (unsealed, or a
link that does not follow). A rewrite of the whole chain from the changed entry onwards, or the
removal of the newest entries with their links, needs an anchor kept outside the database:
`verify` prints the chain head, and `--anchor ID:HASH` checks an earlier one is still there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tandem.storage.models import AuditChainLink, AuditEntry, AuditEntryPatient

GENESIS = "0" * 64
BATCH = 5000
LOCK_TIMEOUT = "500ms"  # writers queue behind the sealer's lock request for at most this long
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires
SEALER_LOCK = 0x7461_6E64_656D_01  # pg_advisory_xact_lock key: one sealer at a time

# The fields a chain hash covers, in this order. Adding a column to audit_entries does not change
# old hashes; to cover a new column, add it here with a new chain version.
FIELDS = (
    "id",
    "recorded_at",
    "user_id",
    "actor",
    "role",
    "action",
    "operation",
    "resource_type",
    "resource_id",
    "patient_id",
    "outcome",
    "outcome_detail",
    "source_ip",
    "user_agent",
    "channel",
    "query",
)
_COLUMNS = [AuditEntry.__table__.c[name] for name in FIELDS]


class SealerBusy(Exception):
    """Transactions writing audit entries did not end within LOCK_TIMEOUT; try again later."""


def content(entry: Row[Any] | Sequence[Any], shown: Iterable[str]) -> bytes:
    """An entry's fields (in FIELDS order) and the patients it showed, as canonical JSON."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in entry]
    return json.dumps(
        {"entry": values, "shown": sorted(shown)},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def link(previous: str, entry_content: bytes) -> str:
    return hashlib.sha256(previous.encode("ascii") + b"\n" + entry_content).hexdigest()


# --- sealing -------------------------------------------------------------------------------


def horizon(sessions: sessionmaker[Session]) -> int | None:
    """PostgreSQL: the highest entry id below which every entry has committed (None on SQLite,
    where the sealing transaction itself holds the only write lock)."""
    with sessions() as db:
        if db.get_bind().dialect.name != "postgresql":
            return None
        db.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        try:
            value = db.execute(text("SELECT audit_horizon()")).scalar_one()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise SealerBusy("audit entries are being written; sealing waits") from None
            raise
        db.commit()
        return int(value)


def seal(sessions: sessionmaker[Session], now: datetime, batch: int = BATCH) -> int:
    """Chain every entry not sealed yet (up to the horizon); returns how many were sealed."""
    upto = horizon(sessions)
    sealed = 0
    while True:
        done = _seal_batch(sessions, now, upto, batch)
        sealed += done
        if done < batch:
            return sealed


def seal_job(sessions: sessionmaker[Session], now: datetime) -> None:
    """The scheduled job (`audit.seal`)."""
    seal(sessions, now)


def _seal_batch(
    sessions: sessionmaker[Session], now: datetime, upto: int | None, batch: int
) -> int:
    with sessions() as db:
        if db.get_bind().dialect.name == "postgresql":
            db.execute(select(func.pg_advisory_xact_lock(SEALER_LOCK)))
        else:  # take the write lock before reading, so nothing commits between read and write
            db.connection().exec_driver_sql("BEGIN IMMEDIATE")
        head = db.execute(
            select(AuditChainLink.entry_id, AuditChainLink.chain_hash)
            .order_by(AuditChainLink.entry_id.desc())
            .limit(1)
        ).first()
        after, previous = (head[0], head[1]) if head else (None, GENESIS)
        query = select(*_COLUMNS).order_by(AuditEntry.id).limit(batch)
        if after is not None:
            query = query.where(AuditEntry.id > after)
        if upto is not None:
            query = query.where(AuditEntry.id <= upto)
        entries = db.execute(query).all()
        if not entries:
            db.rollback()
            return 0
        shown = _shown(db, entries[0][0], entries[-1][0])
        links = []
        for entry in entries:
            previous = link(previous, content(entry, shown.get(entry[0], ())))
            links.append({"entry_id": entry[0], "chain_hash": previous, "sealed_at": now})
        db.execute(insert(AuditChainLink), links)
        db.commit()
        return len(entries)


def _shown(db: Session, first: int, last: int) -> dict[int, list[str]]:
    shown: dict[int, list[str]] = {}
    for entry_id, patient_id in db.execute(
        select(AuditEntryPatient.audit_entry_id, AuditEntryPatient.patient_id).where(
            AuditEntryPatient.audit_entry_id.between(first, last)
        )
    ):
        shown.setdefault(entry_id, []).append(patient_id)
    return shown


# --- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold."""

    entry_id: int
    problem: str


@dataclass(frozen=True)
class Verdict:
    checked: int  # sealed entries whose link was recomputed and matched
    unsealed: int  # entries newer than the last seal (written since; not checked yet)
    head: tuple[int, str] | None  # the newest link: keep it somewhere else as an anchor
    broken: Break | None

    @property
    def intact(self) -> bool:
        return self.broken is None


def verify(
    sessions: sessionmaker[Session],
    anchors: Sequence[tuple[int, str]] = (),
    batch: int = BATCH,
) -> Verdict:
    """Recompute the chain over every entry, in id order; stop at the first break.

    The walk ends at the newest link read when it starts: the sealed part never changes, while
    the sealer may be extending the chain beyond it meanwhile (those entries count as unsealed)."""
    with sessions() as db:
        last = db.scalar(select(func.max(AuditChainLink.entry_id)))
        orphans = dict(  # links whose entry is gone
            db.execute(
                select(AuditChainLink.entry_id, AuditChainLink.chain_hash)
                .where(
                    ~select(AuditEntry.id).where(AuditEntry.id == AuditChainLink.entry_id).exists()
                )
                .order_by(AuditChainLink.entry_id)
            ).all()
        )
        first_orphan = min(orphans, default=None)
        previous, previous_id = GENESIS, None
        checked = unsealed = 0
        first_unsealed: int | None = None
        head: tuple[int, str] | None = None
        after: int | None = None
        broken: Break | None = None
        while broken is None:
            query = (
                select(*_COLUMNS, AuditChainLink.chain_hash)
                .outerjoin(AuditChainLink, AuditChainLink.entry_id == AuditEntry.id)
                .order_by(AuditEntry.id)
                .limit(batch)
            )
            if after is not None:
                query = query.where(AuditEntry.id > after)
            query = query.where(AuditEntry.id <= (last if last is not None else 0))
            rows = db.execute(query).all()
            if not rows:
                break
            shown = _shown(db, rows[0][0], rows[-1][0])
            for row in rows:
                entry_id, stored = row[0], row[-1]
                if first_orphan is not None and first_orphan < entry_id:
                    broken = _deleted(first_orphan)
                    break
                if stored is None:
                    unsealed += 1
                    first_unsealed = entry_id if first_unsealed is None else first_unsealed
                    continue
                if first_unsealed is not None:
                    broken = Break(
                        first_unsealed,
                        f"entry {first_unsealed} is not in the chain, but entry {entry_id} after "
                        "it is: it was inserted after sealing",
                    )
                    break
                if link(previous, content(row[:-1], shown.get(entry_id, ()))) != stored:
                    before = f"entry {previous_id}" if previous_id is not None else "the start"
                    broken = Break(
                        entry_id,
                        f"entry {entry_id} does not match its seal: it was changed, or entries "
                        f"between {before} and it were removed or inserted",
                    )
                    break
                checked += 1
                previous, previous_id = stored, entry_id
                head = (entry_id, stored)
            after = rows[-1][0]
        if broken is None and first_orphan is not None:
            broken = _deleted(first_orphan)
        newer = select(func.count()).select_from(AuditEntry)
        if last is not None:
            newer = newer.where(AuditEntry.id > last)
        unsealed += db.scalar(newer) or 0
        if broken is None:
            broken = _check_anchors(db, anchors)
    return Verdict(checked, unsealed, head, broken)


def _deleted(entry_id: int) -> Break:
    return Break(entry_id, f"entry {entry_id} was deleted: its seal is there, the entry is not")


def _check_anchors(db: Session, anchors: Sequence[tuple[int, str]]) -> Break | None:
    for entry_id, expected in anchors:
        stored = db.scalar(
            select(AuditChainLink.chain_hash).where(AuditChainLink.entry_id == entry_id)
        )
        if stored != expected:
            found = "is gone" if stored is None else f"is now {stored}"
            return Break(
                entry_id,
                f"the chain was rewritten: the anchor says entry {entry_id} is {expected}, "
                f"its seal {found}",
            )
    return None
