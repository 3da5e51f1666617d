"""The social network's store: SQLite in WAL mode, shared by every replica of every function.

The database path is ``$SOCIAL_DB``, default ``$AQUATOPE_HOME/social/social.db``. The first
open creates the schema and seeds ``N_USERS`` users and a follow graph from a fixed seed, inside
one ``BEGIN IMMEDIATE`` transaction, so several replica processes opening it at once seed it
exactly once. Writers use ``BEGIN IMMEDIATE`` and a busy timeout, so concurrent writers from
many processes queue instead of failing. Connections are pooled per process.
"""

from __future__ import annotations

import json
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["N_USERS", "SEED", "SocialStore", "default_db_path", "open_store", "username"]

N_USERS = 200
SEED = 424242
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS follows (
    follower_id INTEGER NOT NULL, followee_id INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee_id, follower_id);
CREATE TABLE IF NOT EXISTS posts (
    post_id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, text TEXT NOT NULL,
    mentions TEXT NOT NULL, urls TEXT NOT NULL, media TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS urls (short TEXT PRIMARY KEY, url TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS home_timeline (
    user_id INTEGER NOT NULL, post_id INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (user_id, post_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS home_by_time ON home_timeline (user_id, created_at DESC, post_id);
CREATE TABLE IF NOT EXISTS user_timeline (
    user_id INTEGER NOT NULL, post_id INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (user_id, post_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS user_by_time ON user_timeline (user_id, created_at DESC, post_id);
"""


def username(user_id: int) -> str:
    """The seeded user name of ``user_id`` (``user_17``)."""
    return f"user_{user_id}"


def default_db_path() -> Path:
    """``$SOCIAL_DB``, else ``$AQUATOPE_HOME/social/social.db`` (``~/.aquatope`` by default)."""
    explicit = os.environ.get("SOCIAL_DB")
    if explicit:
        return Path(explicit)
    home = os.environ.get("AQUATOPE_HOME") or str(Path.home() / ".aquatope")
    return Path(home) / "social" / "social.db"


def _follow_graph(rng: random.Random) -> list[tuple[int, int]]:
    """Each user follows 3-20 others, low ids (popular users) more often.

    Returns:
        ``(follower, followee)`` pairs, sorted.
    """
    weights = [1.0 / (rank + 1) ** 0.7 for rank in range(N_USERS)]
    edges: set[tuple[int, int]] = set()
    for follower in range(N_USERS):
        for followee in rng.choices(range(N_USERS), weights=weights, k=rng.randint(3, 20)):
            if followee != follower:
                edges.add((follower, followee))
    return sorted(edges)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the database to write-ahead logging (kept in the file, so once is enough).

    The switch needs the database to itself and SQLite answers "database is locked" at once,
    without its busy timeout, while another process holds it (several replicas opening a
    fresh database together): retry until the busy timeout has passed.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.02)  # back off while the other process finishes its transaction


class SocialStore:
    """The social network's tables behind a handful of queries.

    Args:
        path: the SQLite file (its directory is created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._ensure_seeded()

    # -- connections and transactions

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def conn(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection (autocommit; transactions are explicit) from the pool.

        The runner serves each request on a new thread, so connections are pooled rather
        than kept per thread; a connection is used by one thread at a time.
        """
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            self._pool.put(conn)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error."""
        with self.conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _ensure_seeded(self) -> None:
        with self.conn() as conn:
            conn.executescript(_SCHEMA)
        with self.write() as tx:
            if tx.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
                return
            rng = random.Random(SEED)
            tx.executemany(
                "INSERT OR IGNORE INTO users (user_id, username, name) VALUES (?, ?, ?)",
                [(u, username(u), f"User {u}") for u in range(N_USERS)],
            )
            tx.executemany(
                "INSERT OR IGNORE INTO follows (follower_id, followee_id) VALUES (?, ?)",
                _follow_graph(rng),
            )
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('seeded', ?)",
                (json.dumps({"users": N_USERS, "seed": SEED, "at": time.time()}),),
            )

    def close(self) -> None:
        """Close the pooled connections (borrowed ones close when garbage-collected)."""
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    # -- users and the graph

    def user_name(self, user_id: int) -> str | None:
        """The user's name, or ``None`` when there is no such user."""
        with self.conn() as conn:
            row = conn.execute(
                "SELECT username FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def users_by_name(self, names: Iterable[str]) -> dict[str, int]:
        """``{username: user_id}`` for the names that exist."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        with self.conn() as conn:
            rows = conn.execute(
                f"SELECT username, user_id FROM users WHERE username IN ({marks})", wanted
            ).fetchall()
        return {str(n): int(i) for n, i in rows}

    def followers(self, user_id: int) -> list[int]:
        """Ids of the users following ``user_id``."""
        with self.conn() as conn:
            rows = conn.execute(
                "SELECT follower_id FROM follows WHERE followee_id = ? ORDER BY follower_id",
                (user_id,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    # -- posts

    def store_post(self, post: dict[str, Any], urls: list[dict[str, str]]) -> bool:
        """Insert a post and its short URLs. Returns False if the post id was already stored."""
        with self.write() as tx:
            cur = tx.execute(
                "INSERT OR IGNORE INTO posts (post_id, user_id, text, mentions, urls, media, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    post["post_id"],
                    post["user_id"],
                    post["text"],
                    json.dumps(post["mentions"]),
                    json.dumps(urls),
                    json.dumps(post["media"]),
                    post["created_at"],
                ),
            )
            tx.executemany(
                "INSERT OR IGNORE INTO urls (short, url) VALUES (?, ?)",
                [(u["short"], u["url"]) for u in urls],
            )
            return cur.rowcount == 1

    def posts(self, post_ids: list[int]) -> dict[int, dict[str, Any]]:
        """The stored posts among ``post_ids``, by id."""
        if not post_ids:
            return {}
        marks = ",".join("?" * len(post_ids))
        with self.conn() as conn:
            rows = conn.execute(
                "SELECT p.post_id, p.user_id, u.username, p.text, p.mentions, p.urls, p.media, "
                "p.created_at FROM posts p JOIN users u USING (user_id) "
                f"WHERE p.post_id IN ({marks})",
                post_ids,
            ).fetchall()
        return {
            int(r[0]): {
                "post_id": int(r[0]),
                "user_id": int(r[1]),
                "username": r[2],
                "text": r[3],
                "mentions": json.loads(r[4]),
                "urls": json.loads(r[5]),
                "media": json.loads(r[6]),
                "created_at": float(r[7]),
            }
            for r in rows
        }

    # -- timelines

    def add_to_timeline(
        self, table: str, user_ids: Iterable[int], post_id: int, created_at: float
    ) -> int:
        """Put ``post_id`` on each user's ``home`` or ``user`` timeline; returns rows added."""
        name = _timeline_table(table)
        rows = [(u, post_id, created_at) for u in sorted(set(user_ids))]
        with self.write() as tx:
            before = tx.total_changes
            tx.executemany(
                f"INSERT OR IGNORE INTO {name} (user_id, post_id, created_at) VALUES (?, ?, ?)",
                rows,
            )
            return tx.total_changes - before

    def timeline(self, table: str, user_id: int, start: int, stop: int) -> list[int]:
        """Post ids on a timeline, newest first, positions ``start`` (inclusive) to ``stop``."""
        name = _timeline_table(table)
        with self.conn() as conn:
            rows = conn.execute(
                f"SELECT post_id FROM {name} WHERE user_id = ? "
                "ORDER BY created_at DESC, post_id DESC LIMIT ? OFFSET ?",
                (user_id, stop - start, start),
            ).fetchall()
        return [int(r[0]) for r in rows]


def _timeline_table(table: str) -> str:
    if table not in ("home", "user"):
        raise ValueError(f"timeline must be 'home' or 'user', got {table!r}")
    return f"{table}_timeline"


_STORES: dict[Path, SocialStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(path: str | Path | None = None) -> SocialStore:
    """The process-wide store for ``path`` (default :func:`default_db_path`), opened once."""
    resolved = Path(path or default_db_path()).resolve()
    with _STORES_LOCK:
        store = _STORES.get(resolved)
        if store is None:
            store = _STORES[resolved] = SocialStore(resolved)
        return store


MAX_PAGE = 100


def read_timeline(store: SocialStore, kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """One page of a user's ``kind`` ("home" or "user") timeline, newest first.

    Request: ``{"user_id": int, "start": int = 0, "stop": int = start + 10}``.

    Raises:
        BadInput: bad paging or unknown user (the handler answers 400).
    """
    from functions.common.http import BadInput, field

    user_id = field(request, "user_id", int)
    start = field(request, "start", int, default=0)
    stop = field(request, "stop", int, default=start + 10)
    if not 0 <= start < stop or stop - start > MAX_PAGE:
        raise BadInput(
            f"need 0 <= start < stop and stop - start <= {MAX_PAGE}, got {start}..{stop}"
        )
    if store.user_name(user_id) is None:
        raise BadInput(f"field 'user_id': no user {user_id}")
    post_ids = store.timeline(kind, user_id, start, stop)
    return {"user_id": user_id, "start": start, "stop": stop, "post_ids": post_ids}
