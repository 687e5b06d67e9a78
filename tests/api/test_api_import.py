"""The API process never imports torch (jobs go to workers by task name)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_and_building_the_api_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from ucvgl.api.main import create_app\n"
        "from ucvgl.shared.config import Settings\n"
        f"app = create_app(Settings(work_dir={str(tmp_path)!r}))\n"
        "app.openapi()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'faiss') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
