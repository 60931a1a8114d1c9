"""Building blocks every config file shares, so a setting the README offers
for any run exists in every config that can use it.

Each root config (igm_texture, winn_texture, igm_celeba, winn_celeba,
icl_digits; the others extend one of these) ends with `complete(c)`, which
adds what is missing and keeps what the file set:

  profile_round        every trainer: 0 off; N traces round N into
                       <workdir>/profile (alias --config.profile_steps)
  eval.per_round       evaluators by name (eval/evaluators.py: swd, fid,
  eval.final           test_error, fgsm), comma-separated; "" none
  eval.every_rounds    per_round runs every N rounds (and the last)
  eval.inception_*     the fid evaluator's settings: it needs
                       `eval.inception_weights` to name the weights file
  log.report           every trainer: write <workdir>/report (report.md and
                       its plots, introjax/report.py) when the run ends
  eval.kid_*, pr_k,    kid, precision_recall and semisup's settings
  eval.semisup_*
"""
import ml_collections


def evaluation():
  """eval.*: no evaluator unless the config names one; fid's weights name
  pytorch-fid's pt_inception-2015-12-05-6726825d.pth or an .npz converted
  from it (README: "Evaluation: SWD, FID, test error, FGSM"). Nothing is downloaded."""
  return {"per_round": "",
          "final": "",
          "every_rounds": 1,
          "batch_size": 100,        # images per evaluation call (rounded up
                                    #   to a multiple of the devices)
          "inception_weights": "",
          "inception_splits": 10,   # Inception score parts (≤ the images)
          "inception_batch": 50,    # images per Inception forward pass
          "kid_subsets": 100,       # KID: subsets averaged (eval/features.py)
          "kid_subset_size": 1000,  #   of this many images of each set
          "pr_k": 3,                # precision/recall: the k-th neighbour
          "semisup_labelled": 1000,  # IGM §4.5: labelled examples per SVM,
          "semisup_heldout": 10000,  #   held-out ones choosing C,
          "semisup_svms": 100,       #   SVMs averaged (eval/semisup.py),
          "semisup_selection_draws": 5,  # labelled draws per C tried
          "semisup_jobs": 0}  # SVMs fitted at once; 0: one per core


def complete(c):
  """Adds the shared settings `c` lacks; returns `c`."""
  if "profile_round" not in c:
    c.profile_round = 0
  if "eval" not in c:
    c.eval = ml_collections.ConfigDict()
  for key, value in evaluation().items():
    if key not in c.eval:
      c.eval[key] = value
  if "log" not in c:
    c.log = ml_collections.ConfigDict()
  if "report" not in c.log:
    c.log.report = True
  return c
