"""Written against main's UNCHANGED rnn_jax (commit 3c70204, before issue 12's one TrainState):
tiny checkpoints of the engine and of the char LM, with the arrays they hold as .npz.

Run once as ``cd /work/main && python tests/data/make_fixtures.py <loop worktree>/tests/data``
(it imports the old module paths, rnn_jax.lm; it does not run against this tree)."""
import os, shutil, sys, tempfile, json
import numpy as np, jax
from rnn_jax.train import loop, training
from rnn_jax import lm

out = sys.argv[1]

def flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

def keep(workdir, name, config, state_tree):
    dest = os.path.join(out, name)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    shutil.copytree(os.path.join(workdir, "checkpoints"), os.path.join(dest, "checkpoints"))
    shutil.copy(os.path.join(workdir, "config.json"), dest)
    np.savez(os.path.join(dest, "arrays.npz"), **flat(state_tree))

out = os.path.abspath(out)
# Engine: two seeds, RNN H=4, 2 steps.
c = training.default_config()
c.cell = "rnn"; c.hidden_size = 4; c.task.name = "adding_le"; c.task.seq_len = 5
c.task.eval_size = 8; c.batch_size = 4; c.num_steps = 2; c.num_seeds = 2
c.optimizer.name = "adam"; c.eval_every = 2; c.checkpoint_every = 2; c.log_every = 2
c.keep_checkpoints = 1; c.progress_every_s = 0.0
w = tempfile.mkdtemp()
loop.train_and_evaluate(c, w)
state = loop.restore_state(c, w)
keep(w, "engine_v0", c, state)

# Char LM: RNN H=4, 2 layers, 2 steps on a tiny corpus.
w = tempfile.mkdtemp()
os.chdir(w)  # data.path is relative ("corpus.txt"), so a test can resume it from a copy
corpus = "corpus.txt"
with open(corpus, "w") as f:
    f.write("the cat sat on the mat. " * 20)
c = lm.default_config()
c.cell = "rnn"; c.hidden_size = 4; c.embed_size = 3; c.num_layers = 2; c.dropout = 0.0
c.batch_size = 2; c.window = 8; c.eval_batch_size = 1; c.num_steps = 2
c.eval_every = 2; c.checkpoint_every = 2; c.log_every = 2; c.keep_checkpoints = 1
c.progress_every_s = 0.0; c.sample_length = 4; c.data.path = corpus
lm.train_and_evaluate(c, w)
from rnn_jax.train.checkpointing import Checkpointer
import ml_collections
ck = Checkpointer(os.path.join(w, "checkpoints"), keep=1, metric_name="val_bpc",
                  higher_is_better=False, read_only=True)
saved = ml_collections.ConfigDict(ck.saved_config(2))
V = len(lm.vocab_from_config(saved))
like = jax.eval_shape(lambda k: lm.init_state(saved, V, k), jax.random.PRNGKey(0))
st = ck.restore(2, like)
ck.close()
keep(w, "char_lm_v0", c, st)
# the corpus travels with the fixture (the config names a temp path)
shutil.copy(corpus, os.path.join(out, "char_lm_v0", "corpus.txt"))
print("ok")
