#!/usr/bin/env bash
# The transaction's full kill matrix (docs/transactions.md): every scenario of
# tests/transaction_kill.rs killed at every crash point of the command, of its recovery after
# every one of those, and of rollback; then at every call of mkdir, openat, write, fsync,
# fchmod, fchown, rename and unlink (strace's fault injection: SIGKILL at the Nth call) of the
# command, of its recovery and of rollback. After each kill the SAME command runs again; the
# result must be the clean run's tree or a clear refusal. `cargo test` runs a subset of it.
# Prints one line of figures per scenario and phase. Needs strace; 10-20 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v strace >/dev/null || {
  echo "kill-matrix.sh: strace is needed (Debian package strace)" >&2
  exit 1
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
PASSTHRU_KILL_MATRIX=full cargo test --test transaction_kill -- --nocapture >"$log" 2>&1
status=$?
grep -E ': [0-9]+ kills' "$log" | sort
if [ "$status" -ne 0 ]; then
  cat "$log" >&2
  echo "kill-matrix.sh: FAILED" >&2
fi
exit "$status"
