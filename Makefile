# Two commands from a fresh clone: `make demo` and `make test`. Each builds its
# own virtual environment (.venv), which sees the system's packages so a GPU
# machine's preinstalled CuPy is used; on a GPU machine without CuPy the demo
# installs lqq[cuda12].
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test venv clean

$(VENV)/.made:
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

# lqq itself, and CuPy where there is a GPU without it
$(VENV)/.lqq: $(VENV)/.made setup.cfg pyproject.toml
	$(PY) -m pip install -q -e .
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && \
	    ! $(PY) -c 'import cupy' 2>/dev/null; then \
	    echo "GPU found, CuPy missing: installing lqq[cuda12]"; \
	    $(PY) -m pip install -q -e '.[cuda12]'; fi
	touch $@

# the test extras: pytest and PyPI's NVRTC/cuobjdump/nvdisasm (offline kernel checks)
$(VENV)/.test: $(VENV)/.lqq
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.lqq

# Offline (a GPU box with its packages preinstalled and no index to install
# from), the demo runs on the calling interpreter with the checkout on PYTHONPATH.
demo:
	@if $(MAKE) --no-print-directory venv; then $(PY) examples/demo.py; else \
	    echo "could not build $(VENV) (offline?): running with $(PYTHON) and PYTHONPATH=."; \
	    PYTHONPATH=. $(PYTHON) examples/demo.py; fi

test: $(VENV)/.test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
