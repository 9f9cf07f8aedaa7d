"""The topic back-fill: events stored while the catalog was unreachable, or before it knew
their item, get their topic later, and the derived state follows as if they had had it.

Items of events without a topic are walked in pages, in item id order, each step resuming
after the last item of the one before, so that items that stay unknown cannot keep the
others from being asked."""

from __future__ import annotations

import sqlite3

from evorec.interest.derived import DerivedChanges, neighbour_topic
from evorec.platform.validation import DAY


def unresolved_items(connection: sqlite3.Connection, limit: int, after: str = "") -> list[str]:
    """Up to `limit` items, after item id `after`, of stored events that have no topic yet
    (the catalog was unreachable, or did not know the item then)."""
    rows = connection.execute(
        "SELECT DISTINCT item_id FROM events WHERE topic_id IS NULL AND item_id > ?"
        " ORDER BY item_id LIMIT ?",
        (after, limit),
    )
    return [str(row[0]) for row in rows]


def assign_topics(connection: sqlite3.Connection, topics: dict[str, str]) -> int:
    """Gives the events of these items, stored without a topic, their topic now, and
    brings the derived state up to date as if they had had it from the start (each one
    joins its user's chain of topics between its neighbours). Returns the events updated."""
    state = DerivedChanges()
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        marks = ",".join("?" * len(topics))
        rows = connection.execute(
            f"SELECT seq, user_id, item_id, event_time FROM events WHERE topic_id IS NULL"
            f" AND item_id IN ({marks}) ORDER BY user_id, event_time, seq",
            list(topics),
        ).fetchall()
        for seq, user, item, time in rows:
            topic = topics[item]
            before = neighbour_topic(connection, user, time, seq, before=True)
            after = neighbour_topic(connection, user, time, seq, before=False)
            connection.execute("UPDATE events SET topic_id=? WHERE seq=?", (topic, seq))
            state.join_chain(user, before, topic, after)
            state.days[(user, int(time // DAY), topic)] += 1
        state.apply(connection)
    return len(rows)
