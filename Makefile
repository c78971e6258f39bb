# The two commands of the README. Both set up what they need on a fresh machine.
.PHONY: demo test lint bench

demo:  ## the main job on the embedded synthetic dataset
	scripts/bootstrap.sh
	.venv/bin/pump-train demo demo-out --seed 0

test:  ## lint + the whole test suite (what CI runs)
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/pytest

bench:  ## benchmarks that print numbers (not part of CI)
	scripts/bootstrap.sh
	.venv/bin/python benchmarks/synth_render.py
	OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/inference_speed.py
