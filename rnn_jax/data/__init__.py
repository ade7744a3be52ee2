"""Real data for the application experiments: text corpora and labelled TSV files.

* :mod:`rnn_jax.data.text`: a character corpus (Python's bundled documentation by
  default), a deterministic train/validation split, vocabularies with an unknown id,
  and batching for truncated backpropagation through time.
* :mod:`rnn_jax.data.tsv`: ``text<TAB>label`` files, character or whitespace tokens,
  padded id arrays with lengths.
* :mod:`rnn_jax.data.seq2seq_tasks`: generated string-to-string tasks (integer addition,
  date normalisation) with character vocabularies and a hash-based held-out split.
"""

from rnn_jax.data.text import Vocab, build_vocab, load_corpus, split_corpus, tbptt_windows

__all__ = ["Vocab", "build_vocab", "load_corpus", "split_corpus", "tbptt_windows"]
