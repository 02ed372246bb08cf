#!/usr/bin/env bash
# Deblur every image under IN_DIR into OUT_DIR (tree mirrored). Safe to rerun: finished files are
# skipped (the journal in OUT_DIR remembers them), so an interrupted job just continues.
#   examples/batch.sh photos/ photos_sharp/ [extra deblur options, e.g. --model evssm]
set -uo pipefail
in_dir=${1:?usage: batch.sh IN_DIR OUT_DIR [deblur batch options]}
out_dir=${2:?usage: batch.sh IN_DIR OUT_DIR [deblur batch options]}
shift 2

deblur batch "$in_dir" "$out_dir" --recursive --report "$out_dir/report.json" "$@"
status=$?
case $status in
  0) echo "all images done: $out_dir" ;;
  1) echo "some images failed; see $out_dir/report.json (a rerun retries failed writes, e.g. after a full disk; --retry-failed also retries unreadable inputs)" >&2 ;;
  *) echo "deblur batch could not start (exit $status)" >&2 ;;
esac
exit $status
