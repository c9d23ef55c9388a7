# The two commands of the README: `make demo` and `make test`. Each sets up what is missing first:
# a virtualenv in .venv with grader installed (editable) and the real Fashion-MNIST data.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test setup data bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dask]'
	@touch $(STAMP)

setup: $(STAMP)

data: $(STAMP)
	@$(VENV)/bin/grader data >/dev/null 2>&1 || PY=$(PY) bash .ci/fetch-data.sh

demo: setup data
	$(VENV)/bin/grader reference --list --assignment trabajo2
	$(VENV)/bin/grader reference --list --assignment challenge_s3
	$(VENV)/bin/grader reference --assignment challenge_s3 --epochs 2
	$(VENV)/bin/grader grade submissions/ -o graded/ || test $$? -eq 1  # 1: the class has a corrupt upload, listed
	@echo "PDFs: graded/reports/*.pdf and graded/class_summary.pdf; grades: graded/grades.csv (Moodle import: graded/moodle_grades.csv)"

test: setup data
	$(PY) -m pytest -q

bench: setup data
	$(PY) benchmarks/battery.py --quick

clean-venv:
	rm -rf $(VENV)
