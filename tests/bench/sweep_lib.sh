# bench_sweep LABEL VARIABLE "VALUES" N ROWS_PER_TRANSACTION: one tests/bench/relay_throughput.sh run per value of
# the environment VARIABLE, each printed as it ends, then one Markdown table of all of them (source it after
# scripts/lib.sh).
bench_sweep() {
  local label=$1 variable=$2 values=$3 n=$4 per_tx=$5 out v rows=()
  for v in $values; do
    log "$label $v"
    out=$(env "$variable=$v" "$OUTBOX_ROOT/tests/bench/relay_throughput.sh" "$n" "$per_tx")
    echo "$out"
    rows+=("$v|$(echo "$out" | tr '\n' '|')")
  done
  echo
  echo "| $label | load events/s | relay events/s | relay / kcat | source rows/s | relay / source | CPU per event | peak RSS |"
  echo "|---|---|---|---|---|---|---|---|"
  for v in "${rows[@]}"; do
    python3 - "$v" <<'PY'
import re, sys
v, text = sys.argv[1].split("|", 1)
load = re.search(r"\(([\d,]+) events/s from one session\)", text).group(1)
rate = re.search(r"relay:\s+([\d,]+) events/s", text).group(1)
rss = re.search(r"peak RSS ([\d.]+) MiB", text).group(1)
source = re.search(r"source:\s+([\d,]+) rows/s", text).group(1)
kcat, to_source = re.search(r"ratio:\s+([\d.]+) of the bare producer, ([\d.]+) of the bare source", text).groups()
cpu = re.search(r"([\d.]+) us/event", text).group(1)
print(f"| {v} | {load} | {rate} | {kcat} | {source} | {to_source} | {cpu} µs | {rss} MiB |")
PY
  done
}
