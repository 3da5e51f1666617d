"""The social network's handlers against a real SQLite database, in-process."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from functions.common import social
from functions.common.text import SHORT_URL_PREFIX, shorten
from functions.inprocess import call, run_workflow

REPO = Path(__file__).resolve().parents[2]
URL = "https://example.org/x?y=1"


def _png(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _ok(response: Any) -> Any:
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def test_composed_post_reaches_every_timeline(
    social_handlers: dict[str, Any], social_db: Path, catalog: Any
) -> None:
    store = social.open_store(social_db)
    author = 0  # the most followed seeded user
    followers = store.followers(author)
    assert len(followers) >= 5
    mentioned = next(u for u in range(1, social.N_USERS) if u not in followers)
    body = {
        "user_id": author,
        "text": f"hello @{social.username(mentioned)} and @ghost, see {URL} spam",
        "media": [{"type": "image/png", "data": _png(64, 40)}],
    }
    run = run_workflow(
        catalog.get("social-compose-post"), social_handlers, json.dumps(body).encode()
    )
    assert set(run.stage_s) == {s.name for s in catalog.get("social-compose-post").stages}
    home = run.output["write-home-timeline"]
    post_id = home["post_id"]
    assert home["recipients"] == len(followers) + 1 and home["added"] == len(followers) + 1
    assert run.output["write-user-timeline"] == {"post_id": post_id, "user_id": author, "added": 1}

    user_page = _ok(call(social_handlers["read-user-timeline"], {"user_id": author}))
    assert user_page["post_ids"][0] == post_id
    for reader in [*followers, mentioned]:
        page = _ok(call(social_handlers["read-home-timeline"], {"user_id": reader, "stop": 100}))
        assert post_id in page["post_ids"], reader
    outsider = next(u for u in range(1, social.N_USERS) if u not in followers and u != mentioned)
    page = _ok(call(social_handlers["read-home-timeline"], {"user_id": outsider, "stop": 100}))
    assert post_id not in page["post_ids"]

    read = run_workflow(
        catalog.get("social-read-home"),
        social_handlers,
        json.dumps({"user_id": followers[0], "stop": 100}).encode(),
    ).output
    (post,) = [p for p in read["posts"] if p["post_id"] == post_id]
    assert post["username"] == social.username(author)
    assert post["text"] == (
        f"hello @{social.username(mentioned)} and @ghost, see {shorten(URL)} ****"
    )
    assert post["mentions"] == [{"username": social.username(mentioned), "user_id": mentioned}]
    assert post["urls"] == [
        {"url": "https://example.org/x?y=1", "short": shorten("https://example.org/x?y=1")}
    ]
    (media,) = post["media"]
    assert (media["width"], media["height"], media["type"]) == (64, 40, "image/png")
    assert media["sha256"] == hashlib.sha256(base64.b64decode(body["media"][0]["data"])).hexdigest()
    assert "thumbnail" not in media

    mine = run_workflow(
        catalog.get("social-read-user"), social_handlers, json.dumps({"user_id": author}).encode()
    ).output
    assert mine["user_id"] == author and mine["posts"][0]["post_id"] == post_id


def test_timelines_are_newest_first_and_paged(
    social_handlers: dict[str, Any], catalog: Any
) -> None:
    author = 5
    ids = []
    for i in range(3):
        body = json.dumps({"user_id": author, "text": f"post number {i}"}).encode()
        ids.append(
            run_workflow(catalog.get("social-compose-post"), social_handlers, body).output[
                "write-user-timeline"
            ]["post_id"]
        )
    page = _ok(
        call(social_handlers["read-user-timeline"], {"user_id": author, "start": 0, "stop": 2})
    )
    assert page["post_ids"] == [ids[2], ids[1]]
    page = _ok(
        call(social_handlers["read-user-timeline"], {"user_id": author, "start": 2, "stop": 3})
    )
    assert page["post_ids"] == [ids[0]]


def test_text_filter_work(social_handlers: dict[str, Any]) -> None:
    body = {
        "post_id": 1,
        "user_id": 2,
        "created_at": 10.0,
        "text": "@user_3 @user_3 @nobody mail@user_4 https://a.example/p, http://b.example "
        "SCAM scampi",
    }
    out = _ok(call(social_handlers["text-filter"], body))
    assert out["mentions"] == [{"username": "user_3", "user_id": 3}]
    assert [u["url"] for u in out["urls"]] == ["https://a.example/p", "http://b.example"]
    assert all(u["short"].startswith(SHORT_URL_PREFIX) for u in out["urls"])
    assert out["masked_words"] == 1
    assert out["text"].endswith("**** scampi")
    assert "https://a.example/p" not in out["text"]


def test_media_filter_thumbnails_and_hashes(social_handlers: dict[str, Any]) -> None:
    data = _png(300, 120)
    out = _ok(
        call(
            social_handlers["media-filter"],
            {"post_id": 9, "media": [{"type": "image/png", "data": data}]},
        )
    )
    (item,) = out["media"]
    assert (item["width"], item["height"]) == (300, 120)
    thumb = Image.open(io.BytesIO(base64.b64decode(item["thumbnail"])))
    assert max(thumb.size) == 32 and thumb.size[1] < 32
    assert item["sha256"] == hashlib.sha256(base64.b64decode(data)).hexdigest()


@pytest.mark.parametrize(
    ("name", "body", "fragment"),
    [
        ("compose-post", b"{", "not valid JSON"),
        ("compose-post", {"user_id": 1}, "'text' is required"),
        ("compose-post", {"user_id": "1", "text": "x"}, "must be an integer"),
        ("compose-post", {"user_id": True, "text": "x"}, "got a boolean"),
        ("compose-post", {"user_id": 10**6, "text": "x"}, "no user"),
        ("compose-post", {"user_id": 1, "text": "   "}, "1..2000"),
        ("compose-post", {"user_id": 1, "text": "x", "media": [1]}, "media[0]"),
        (
            "media-filter",
            {"post_id": 1, "media": [{"type": "image/gif", "data": "AA=="}]},
            "not supported",
        ),
        (
            "media-filter",
            {"post_id": 1, "media": [{"type": "image/png", "data": "@@"}]},
            "not valid base64",
        ),
        (
            "media-filter",
            {"post_id": 1, "media": [{"type": "image/png", "data": "aGVsbG8="}]},
            "not a decodable image",
        ),
        (
            "store-post",
            {"text-filter": {"post_id": 1}, "media-filter": {"post_id": 2}},
            "different posts",
        ),
        ("store-post", {"text-filter": {}}, "'media-filter' is required"),
        ("read-home-timeline", {"user_id": 1, "start": 5, "stop": 2}, "start < stop"),
        ("read-user-timeline", {"user_id": -1}, "no user"),
        ("read-post", {"post_ids": ["a"]}, "list of integers"),
        (
            "write-home-timeline",
            {"post_id": 1, "user_id": 1, "created_at": 1, "mentioned_ids": ["x"]},
            "integers",
        ),
    ],
)
def test_bad_input_is_a_400(
    social_handlers: dict[str, Any], name: str, body: Any, fragment: str
) -> None:
    response = call(social_handlers[name], body)
    assert response.status_code == 400
    assert fragment in json.loads(response.body)["error"]


_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from functions.common import social
    store = social.open_store({db!r})
    worker = int(sys.argv[1])
    for i in range(40):
        store.add_to_timeline("home", range(10), worker * 1000 + i, float(i))
    """
)


def test_concurrent_processes_seed_once_and_lose_no_writes(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    script = _WRITER.format(repo=str(REPO), db=str(db))
    workers = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in range(4)]
    assert [p.wait(timeout=60) for p in workers] == [0, 0, 0, 0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == social.N_USERS
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'seeded'").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM home_timeline").fetchone()[0] == 4 * 40 * 10


def test_threads_of_one_replica_share_the_store(social_handlers: dict[str, Any]) -> None:
    def post(i: int) -> int:
        body = {"post_id": 10**12 + i, "user_id": 1, "created_at": 1.0 + i}
        response = call(social_handlers["write-user-timeline"], body)
        assert response.status_code == 200, response.body
        return int(json.loads(response.body)["added"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(post, range(64))) == 64
    page = _ok(call(social_handlers["read-user-timeline"], {"user_id": 1, "stop": 100}))
    assert {10**12 + i for i in range(64)} <= set(page["post_ids"])


def test_seeded_graph_is_deterministic(tmp_path: Path) -> None:
    a = social.SocialStore(tmp_path / "a.db")
    b = social.SocialStore(tmp_path / "b.db")
    assert [a.followers(u) for u in range(20)] == [b.followers(u) for u in range(20)]
