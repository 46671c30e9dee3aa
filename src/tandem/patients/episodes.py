"""Telling other domains that an episode of care began, moved or ended.

Every path that writes an episode (the service, the demo, bulk loads) calls `episode_changed`
after flushing it; the domains that keep a summary of episodes (the detox census) list their
listener in their DOMAIN. Explicit, in the same unit of work, no ORM hooks.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from tandem.storage.models import Episode


def episode_changed(db: Session, episodes: Episode | Iterable[Episode]) -> None:
    from tandem.domains import episode_listeners

    changed = [episodes] if isinstance(episodes, Episode) else list(episodes)
    if not changed:
        return
    db.flush()
    for listener in episode_listeners():
        for episode in changed:
            listener(db, episode)
