"""The README's examples work as written (against the test instance instead of :8080)."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_curl_and_python_examples(tollgate, dev_key):
    env = {**os.environ, "TOLLGATE_KEY": dev_key}
    curl = next(b for b in blocks("sh") if "curl" in b)
    curl = "\n".join(line for line in curl.splitlines() if not line.startswith("export "))
    out = subprocess.run(["bash", "-ec", curl.replace("http://127.0.0.1:8080", tollgate.url)],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Mock reply to: Hello!" in out.stdout
    py = next(b for b in blocks("python") if "OpenAI(" in b)
    out = subprocess.run([sys.executable, "-c", py.replace("http://127.0.0.1:8080", tollgate.url)],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Mock reply to: Hello!"
