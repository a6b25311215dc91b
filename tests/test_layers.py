"""The layering contract (``.importlinter``) holds: imports run only downward, sources' transforms never
reach the Aim writer, the seam knows no particular plug. ``lint-imports`` is run as a user runs it."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_contracts_are_kept():
    lint = os.path.join(os.path.dirname(sys.executable), 'lint-imports')
    result = subprocess.run([lint, '--no-cache', '--no-logo', os.path.join(ROOT, '.importlinter')], cwd=ROOT,
                            env={**os.environ, 'PYTHONPATH': ROOT}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert '0 broken' in result.stdout, result.stdout[-4000:]
