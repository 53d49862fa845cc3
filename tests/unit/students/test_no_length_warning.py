"""Long articles are cut to head + tail tokens on purpose: the tokenizer must not warn that a sequence is
"longer than the specified maximum sequence length" (it used to, on every probe and stack run)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from distillery.students.encoder import Encoder
enc = Encoder(head_tokens=256, tail_tokens=256)  # the spec default: a 512-token budget
enc._load()
ids = enc._token_ids(["word " * 3000])
assert len(ids[0]) <= 256 + 256 + 2, len(ids[0])
print("ok", len(ids[0]))
"""


def test_cutting_long_texts_prints_no_tokenizer_warning():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False,
                         env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")
    assert "longer than the specified maximum sequence length" not in out.stderr
