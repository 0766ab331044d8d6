"""Budgets through the real binaries: the openai client sees budget errors; two gateway
processes sharing Redis and PostgreSQL never admit more than the budget affords; a
`kill -9` loses no usage record of a completed response."""

import os
import secrets
import sqlite3
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import start_tollgate

# mock-1 costs $1 per output token, nothing for input: with max_tokens 2 every request
# costs exactly $2, its worst case, so a $100 budget affords exactly 50 requests.
PRICED = """
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: mock}
spec:
  provider: mock
  models:
    - name: mock-1
      prices: {inputPerMtok: "0", outputPerMtok: "1000000"}
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: alice}
spec: {subject: {kind: developer, name: alice}, limit: "LIMIT", period: monthly, timeZone: Europe/Berlin}
"""

PG_ADMIN = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def body(stream=False):
    return {"model": "mock-1", "max_tokens": 2, "stream": stream,
            "messages": [{"role": "user", "content": "a question with a long answer"}]}


def test_openai_client_sees_budget_exhaustion(tmp_path):
    t = start_tollgate(tmp_path, PRICED.replace("LIMIT", "4"))
    try:
        client = OpenAI(base_url=t.url + "/v1", api_key=t.create_key("alice"), max_retries=0)
        for _ in range(2):
            client.chat.completions.create(**body())
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(**body())
        assert e.value.body["code"] == "budget_exceeded"
        assert e.value.response.headers["x-tollgate-budget"] == "default/alice"
        budgets = t.cli("budget", "list", "--json").stdout
        assert '"spent": "4.000000"' in budgets and '"remaining": "0.000000"' in budgets
    finally:
        t.proc.stop()


@pytest.fixture()
def pg_database():
    name = f"tollgate_e2e_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def test_responses_api_is_charged_and_refused_like_chat(tmp_path):
    t = start_tollgate(tmp_path, PRICED.replace("LIMIT", "4"))
    try:
        client = OpenAI(base_url=t.url + "/v1", api_key=t.create_key("alice"), max_retries=0)
        first = client.responses.create(model="mock-1", input="a question with a long answer", max_output_tokens=2)
        assert first.usage.output_tokens == 2 and first.status == "incomplete"
        events = list(client.responses.create(model="mock-1", input="again please", max_output_tokens=2, stream=True))
        assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 2
        with pytest.raises(openai.RateLimitError) as e:
            client.responses.create(model="mock-1", input="one more", max_output_tokens=2)
        assert e.value.body["code"] == "budget_exceeded"
        budgets = t.cli("budget", "list", "--json").stdout
        assert '"spent": "4.000000"' in budgets
    finally:
        t.proc.stop()


def test_two_gateways_sharing_redis_and_postgres_never_overspend(tmp_path, pg_database):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    args = ["--redis", "redis://127.0.0.1:6379", "--redis-prefix", prefix]
    admin = "tg-" + secrets.token_urlsafe(24)
    a = start_tollgate(tmp_path / "a", PRICED.replace("LIMIT", "100"), pg_database, args, admin_key=admin)
    b = start_tollgate(tmp_path / "b", PRICED.replace("LIMIT", "100"), pg_database, args, admin_key=admin)
    try:
        key = a.create_key("alice")
        urls = [a.url, b.url]

        def one(i):
            r = httpx.post(urls[i % 2] + "/v1/chat/completions", json=body(stream=i % 3 == 0),
                           headers={"authorization": f"Bearer {key}"}, timeout=30)
            return r.status_code, r.text

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(500)))
        statuses = [s for s, _ in results]
        assert statuses.count(200) == 50, {s: statuses.count(s) for s in set(statuses)}
        assert all(s == 429 and "budget_exceeded" in t for s, t in results if s != 200)
        deadline = time.monotonic() + 10
        while True:
            v = b.admin("GET", "/api/v1/budgets/alice").json()
            if v["reservedMicros"] == 0:
                assert v["spentMicros"] == 100_000_000, v
                break
            assert time.monotonic() < deadline, v
            time.sleep(0.05)
    finally:
        a.proc.stop()
        b.proc.stop()


def test_kill_9_loses_no_record_of_a_completed_response(tmp_path):
    t = start_tollgate(tmp_path, PRICED.replace("LIMIT", "100000"))
    key = t.create_key("alice")
    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n):
        with httpx.Client(timeout=10) as c:
            i = 0
            while not stop.is_set():
                rid = f"w{n}-{i}"
                i += 1
                stream = i % 2 == 0
                try:
                    r = c.post(t.url + "/v1/chat/completions", json=body(stream),
                               headers={"authorization": f"Bearer {key}", "x-request-id": rid})
                except httpx.HTTPError:
                    return
                done = r.status_code == 200 and (not stream or r.text.rstrip().endswith("data: [DONE]"))
                if done:
                    with lock:
                        completed.append(rid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 30
    while len(completed) < 300:
        assert time.monotonic() < deadline, "load did not get going"
        time.sleep(0.01)
    t.proc.proc.kill()  # SIGKILL, mid-load
    t.proc.proc.wait()
    stop.set()
    for th in threads:
        th.join()
    # Restart on the same database: the ledger (with anything the journal still held
    # replayed) has a record for every response a client received complete, and the
    # budget's counter is rebuilt from that ledger.
    t2 = start_tollgate(tmp_path, PRICED.replace("LIMIT", "100000"), admin_key=t.admin_key)
    try:
        db = sqlite3.connect(tmp_path / "t.db")
        have = {row[0] for row in db.execute("SELECT request_id FROM usage_records")}
        missing = [rid for rid in completed if rid not in have]
        assert not missing, f"{len(missing)} of {len(completed)} completed responses have no usage record"
        spent_in_ledger = db.execute("SELECT SUM(cost_micros) FROM usage_charges").fetchone()[0]
        db.close()
        v = t2.admin("GET", "/api/v1/budgets/alice").json()
        assert v["spentMicros"] == spent_in_ledger
    finally:
        t2.proc.stop()
