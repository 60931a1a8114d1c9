"""launch/colab_tpu.ipynb runs top to bottom on CPU with the tiny ICL config.

Every code cell runs in one namespace, as a kernel would, except those
tagged "install" (git clone / pip and IPython's `!` syntax). A cell after the
one tagged "parameters" sets the tiny config, as papermill injects
parameters. IPython is not a dependency, so `IPython.display` is a stand-in
that records what the notebook shows.
"""
import json
import logging as std_logging
import sys
import types

from absl import logging
import pytest

from conftest import REPO

NOTEBOOK = REPO / "launch" / "colab_tpu.ipynb"
SKIPPED_TAGS = {"install"}


def _cells():
  with open(NOTEBOOK) as f:
    notebook = json.load(f)
  return notebook["cells"]


def _tags(cell):
  return set(cell.get("metadata", {}).get("tags", []))


def test_install_and_drive_cells_are_tagged_and_set_up_the_repo():
  cells = _cells()
  install = [c for c in cells if "install" in _tags(c)]
  assert len(install) == 1 and "colab-only" in _tags(install[0])
  source = "".join(install[0]["source"])
  assert "REPO_URL =" in source and "pip install" in source
  assert 'pip install -q -e "{TARGET}"' in source
  assert 'f"{REPO_DIR}[{EXTRA}]"' in source
  assert [c for c in cells if "drive" in _tags(c)]
  assert len([c for c in cells if "parameters" in _tags(c)]) == 1


@pytest.fixture
def fake_ipython(monkeypatch):
  shown = []
  display_module = types.ModuleType("IPython.display")
  display_module.Image = lambda filename: ("image", filename)
  display_module.Markdown = lambda text: ("markdown", text)
  display_module.display = shown.append
  package = types.ModuleType("IPython")
  package.display = display_module
  monkeypatch.setitem(sys.modules, "IPython", package)
  monkeypatch.setitem(sys.modules, "IPython.display", display_module)
  return shown


@pytest.fixture
def restore_logging():
  """The notebook sets absl's verbosity and a filter: undo them after."""
  absl_logger, root = std_logging.getLogger("absl"), std_logging.getLogger()
  verbosity = logging.get_verbosity()
  filters, handlers = list(absl_logger.filters), list(root.handlers)
  yield
  logging.set_verbosity(verbosity)
  absl_logger.filters[:] = filters
  root.handlers[:] = handlers


def test_notebook_trains_tiny_icl_and_shows_samples_and_results(
    tmp_path, monkeypatch, fake_ipython, restore_logging):
  monkeypatch.chdir(tmp_path)  # the local fallback workdir lands here
  namespace = {"__name__": "__main__"}
  ran = 0
  for cell in _cells():
    if cell["cell_type"] != "code" or _tags(cell) & SKIPPED_TAGS:
      continue
    source = "".join(cell["source"])
    assert not any(line.lstrip().startswith(("!", "%"))
                   for line in source.splitlines()), source
    exec(compile(source, f"{NOTEBOOK.name} cell {cell.get('id')}", "exec"),
         namespace)
    ran += 1
    if "parameters" in _tags(cell):
      namespace.update(CONFIG="icl_digits.py:tiny", ROUNDS=2)
  assert ran >= 5

  workdir = tmp_path / "runs" / "icl_digits_tiny"
  assert namespace["WORKDIR"] == str(workdir)
  assert namespace["config"].rounds == 2
  assert (workdir / "results.json").exists()
  assert (workdir / "samples" / "icl_round_002.png").exists()
  images = [item[1] for item in fake_ipython if item[0] == "image"]
  assert str(workdir / "samples" / "icl_round_002.png") in images
  markdown = "\n".join(item[1] for item in fake_ipython
                       if item[0] == "markdown")
  assert "| model | test error (%) |" in markdown
  # The progress filter lets warnings through and keeps library chatter out.
  keep = namespace["introjax_lines_only"]
  assert keep in std_logging.getLogger("absl").filters
  record = std_logging.LogRecord("orbax", std_logging.INFO,
                                 "/x/orbax/checkpoint.py", 1, "saved", (),
                                 None)
  assert not keep(record)
  record.levelno = std_logging.WARNING
  assert keep(record)
