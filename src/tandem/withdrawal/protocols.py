"""A program's withdrawal-monitoring protocol in storage: every version kept, one current, the
shipped example for a program without its own. And the words a protocol gives a score (band
label, citation), which the saves, the alerts, the census and the demo share."""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tandem.clock import utcnow
from tandem.errors import NotFound
from tandem.instruments.engine import BandResult, get_instrument
from tandem.instruments.models import Instrument
from tandem.withdrawal.protocol import Citation, Protocol, load_protocol, protocol_from_mapping
from tandem.withdrawal.storage import ProtocolVersionRow

_parsed: dict[str, Protocol] = {}
_parsed_lock = threading.Lock()


def _protocol_of(row: ProtocolVersionRow) -> Protocol:
    with _parsed_lock:
        protocol = _parsed.get(row.content_hash)
    if protocol is None:
        protocol = protocol_from_mapping(row.document, f"protocol version {row.id}")
        with _parsed_lock:
            _parsed[row.content_hash] = protocol
    return protocol


@dataclass(frozen=True)
class ProgramProtocol:
    version_id: int | None  # None: the shipped example, not yet stored for this program
    protocol: Protocol
    origin: str  # example | program


def set_program_protocol(
    db: Session,
    program_id: int,
    protocol: Protocol,
    *,
    origin: str = "program",
    by: int | None = None,
) -> ProgramProtocol:
    """Make `protocol` the program's current version (kept beside every earlier version)."""
    existing = db.scalar(
        select(ProtocolVersionRow).where(
            ProtocolVersionRow.program_id == program_id,
            ProtocolVersionRow.content_hash == protocol.content_hash,
        )
    )
    db.execute(
        update(ProtocolVersionRow)
        .where(ProtocolVersionRow.program_id == program_id)
        .values(is_current=False)
    )
    if existing is None:
        existing = ProtocolVersionRow(
            program_id=program_id,
            protocol_id=protocol.id,
            version=protocol.version,
            content_hash=protocol.content_hash,
            document=protocol.model_dump(mode="json"),
            origin=origin,
            is_current=True,
            created_at=utcnow(),
            created_by=by,
        )
        db.add(existing)
    existing.is_current = True
    db.flush()
    with _parsed_lock:
        _parsed[protocol.content_hash] = protocol
    return ProgramProtocol(existing.id, protocol, existing.origin)


@functools.cache
def _example() -> Protocol:
    return load_protocol()


def program_protocol(db: Session, program_id: int) -> ProgramProtocol:
    """The program's current protocol; the shipped example for a program without its own.
    Reads only: `stored_version` keeps the example for the program when something is scored."""
    row = db.scalar(
        select(ProtocolVersionRow)
        .where(ProtocolVersionRow.program_id == program_id, ProtocolVersionRow.is_current)
        .order_by(ProtocolVersionRow.id.desc())
        .limit(1)
    )
    if row is None:
        return ProgramProtocol(None, _example(), "example")
    return ProgramProtocol(row.id, _protocol_of(row), row.origin)


def stored_version(db: Session, program_id: int, current: ProgramProtocol) -> int:
    """The version id to record on an assessment, storing the example for the program if need be."""
    if current.version_id is not None:
        return current.version_id
    stored = set_program_protocol(db, program_id, current.protocol, origin=current.origin)
    assert stored.version_id is not None
    return stored.version_id


def protocol_version(db: Session, version_id: int) -> Protocol:
    row = db.get(ProtocolVersionRow, version_id)
    if row is None:
        raise NotFound(f"protocol version {version_id} is not known")
    return _protocol_of(row)


def withdrawal_instruments(protocol: Protocol) -> list[Instrument]:
    return [get_instrument(i) for i in protocol.instruments]


# --------------------------------------------------------------------------- words


def short_name(instrument: Instrument) -> str:
    """The abbreviation a ward uses ("CIWA-Ar"), from the end of the instrument's name."""
    match = re.search(r"\(([^()]+)\)\s*$", instrument.name)
    return match.group(1) if match else instrument.name


def citation_text(protocol: Protocol, cited: Citation | None) -> str:
    if cited is None:
        return ""
    text = cited.citation + (f' ("{cited.quote}")' if cited.quote else "")
    if cited.unverified:
        text += " [unverified: " + " ".join(dict.fromkeys(cited.notes)) + "]"
    return text + f" - protocol {protocol.id} v{protocol.version}"


def band_label(
    protocol: Protocol, instrument_id: str, total: int, band: BandResult | None
) -> str | None:
    """The program's wording for the band (its protocol's scheme), else the instrument's."""
    scheme = protocol.instrument(instrument_id).band_scheme
    found = scheme.band_for(total) if scheme else None
    if found is not None:
        return found.label
    return band.label if band is not None else None
