r"""Train any configured model on any task.

    python -m experiments.train --config=experiments/configs/adding.py --workdir=/tmp/adding \
        [--config.hidden_size=64 --config.num_seeds=4 ...]

Re-running the same command with the same --workdir resumes from its latest checkpoint.
All behaviour lives in rnn_jax.train.train_and_evaluate; this file only parses flags.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.train import train_and_evaluate

main = define_main(train_and_evaluate, "adding.py", multi_process=True)

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
