"""Model references: parse a reference string into a :class:`ModelRef`, and GGUF file names.
Pure: no I/O, no network.

Accepted forms (:data:`ACCEPTED_FORMS` is the short version every :class:`RefError` shows)::

    form                                              ModelRef
    ------------------------------------------------  ---------------------------------------------
    hf:owner/repo:Q4_K_M        owner/repo:Q4_K_M     quant="Q4_K_M" (case kept as typed)
    hf:owner/repo:Q4_K_M#v1.0                         ... with revision="v1.0"
    hf:owner/repo/path/in/repo.gguf#rev               path="path/in/repo.gguf", revision="rev"
    hf:owner/repo/folder/                             path="folder", is_dir=True
    hf:owner/repo               owner/repo            the whole repository (revision via "#rev")
    hf:gpt2   hf:gpt2:Q4_K_M    hf:gpt2 config.json   a repository without an owner (needs hf:)
    owner/repo/path.gguf                              like hf:owner/repo/path.gguf ("hf:" optional)
    datasets/owner/repo         spaces/owner/repo     repo_type="dataset" / "space" (also after hf:)
    owner/repo filename         hf:owner/repo a/b.gguf  two words: a repository and a file in it
    https://huggingface.co/owner/repo                 the repository (hf.co, www., $HF_ENDPOINT too)
    https://huggingface.co/owner/repo/blob/REV/path   one file (also /resolve/, /raw/, /blame/)
    https://huggingface.co/owner/repo/tree/REV/dir    a folder (is_dir=True); /tree/REV alone: repo
    https://huggingface.co/gpt2/resolve/REV/path      the same routes of a repository without owner
    https://huggingface.co/datasets/owner/repo/...    the same for datasets/ and spaces/
    huggingface.co/owner/repo/...                     a Hub URL without its scheme
    hf://[datasets/|spaces/]owner/repo[@rev][/path]   huggingface_hub's file-system URIs
    https://example.com/model.bin                     kind="url": any other http(s) URL, as given

Rules worth knowing:

- Repositories without an owner (``gpt2``, ``bert-base-uncased``, as huggingface_hub accepts
  them): a single name needs ``hf:`` (``hf:gpt2``), so that a typo or a forgotten ``{var}``
  in the magic is an error rather than a request for a repository; ``hf:gpt2 config.json``
  names its file unambiguously, and so do page URLs (``/gpt2/resolve/main/config.json``,
  ``/blob/``, ``/tree/``: the route word says where the repository id ends). Otherwise
  ``[hf:]a/b/c`` is read as the repository ``a/b`` (with the path ``c``) and, when that
  reading is valid, also as the file ``b/c`` of the repository ``a``: that second reading is
  :attr:`ModelRef.alternative`. Planning asks the cache, then the Hub, which repository
  exists (the owner/repo reading first, as huggingface_hub's ``HfFileSystem`` does; one
  request more only when it does not exist). ``hf://`` URIs read the same way.

- In ``hf:`` and bare forms ``#`` starts the revision (``refs/pr/2``, a tag, a branch or a 40-hex
  commit); in ``hf://`` URIs ``@`` does, percent-encoded (``@refs%2Fpr%2F1``) or a special ref
  (``@refs/pr/1``, ``@refs/convert/parquet``). In page URLs the revision is the segment after
  ``/blob/`` etc. (percent-decoded); ``refs/pr/N`` and ``refs/convert/NAME`` may appear unencoded.
- Query strings and fragments of Hub page URLs are dropped (``?download=true``); plain URLs are
  kept exactly as given.
- Hub URLs on huggingface.co, www.huggingface.co, hf.co and www.hf.co that do not name a repository,
  file or folder are a :class:`RefError`; on a custom endpoint (``endpoint=`` or ``$HF_ENDPOINT``,
  read at call time) they are plain URLs, since such a server may serve other files too.
- ``str(ref)`` is canonical: ``hf:[datasets/|spaces/]owner/repo[:QUANT][/path[/]][#rev]``, or
  ``hf://...`` when the path itself contains ``#``, or the URL of a plain URL reference;
  for a repository without an owner, ``hf:name[:QUANT][#rev]`` or the two words
  ``hf:name path[/][#rev]``. ``parse_ref(str(ref)) == ref``, except for the file of a
  repository without an owner whose path contains whitespace or ``#``: the two-word form
  cannot carry it (its page URL can, with a revision).

Everything wrong raises :class:`~nbmodels.errors.RefError` (also a ``ValueError``), whose message
says what is wrong, quotes the input (truncated, URL secrets removed) and lists the accepted forms.

GGUF file names (:func:`split_quant_name`, :func:`is_sidecar`) follow the llama.cpp conventions:
``Model-Q4_K_M.gguf``, split files ``Model-Q8_0-00001-of-00003.gguf``, quant-named folders, and
sidecars (``mmproj-*``, ``*imatrix*``) that are not quants.
"""

from ._check import ACCEPTED_FORMS, REPO_URL_PREFIX, RepoType
from ._model import ModelRef
from ._names import is_sidecar, split_complete, split_part, split_quant_name, split_siblings
from ._parse import parse_ref

__all__ = [
    "ACCEPTED_FORMS",
    "REPO_URL_PREFIX",
    "ModelRef",
    "RepoType",
    "is_sidecar",
    "parse_ref",
    "split_complete",
    "split_part",
    "split_quant_name",
    "split_siblings",
]
