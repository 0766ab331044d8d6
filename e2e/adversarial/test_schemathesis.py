"""The admin API against its own OpenAPI document, fuzzed by schemathesis (issue 17,
item 15): for an admin and for a developer, every answer to generated and mutated requests
is a documented status with a JSON body of the documented shape, and never a 5xx. Bounded
in time (`--max-time`); the seed is printed on failure to replay it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.parametrize("role", ["admin", "developer"])
def test_the_admin_api_keeps_its_documented_contract(gateway_factory, role):
    g = gateway_factory()
    key = g.admin_key if role == "admin" else g.create_key("dev")
    cmd = [str(VENV_BIN / "schemathesis"), "run", g.url + "/api/v1/openapi.json",
           "-H", f"Authorization: Bearer {key}", "--checks", CHECKS,
           "--phases", "examples,coverage,fuzzing", "--max-time", os.environ.get("TOLLGATE_FUZZ_SECONDS", "40"),
           "--max-failures", "20", "--workers", "2", "--no-color"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "passed" in r.stdout
