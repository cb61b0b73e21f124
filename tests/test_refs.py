"""Tests for the reference parser (nbmodels.refs): every accepted form, every error, properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbmodels._redact import redact_reference, redact_text
from nbmodels.errors import NbmodelsError, RefError
from nbmodels.refs import ACCEPTED_FORMS, ModelRef, is_sidecar, parse_ref, split_quant_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def _no_hf_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def hf(repo_id: str, **kwargs: object) -> ModelRef:
    return ModelRef("hf", repo_id, **kwargs)  # type: ignore[arg-type]


def url(u: str) -> ModelRef:
    return ModelRef("url", url=u)


# --------------------------------------------------------------------------------------------
# Accepted forms
# --------------------------------------------------------------------------------------------

FORMS: list[tuple[str, ModelRef]] = [
    # quants
    ("hf:owner/repo:Q4_K_M", hf("owner/repo", quant="Q4_K_M")),
    ("owner/repo:Q4_K_M", hf("owner/repo", quant="Q4_K_M")),
    ("owner/repo:q4_k_m", hf("owner/repo", quant="q4_k_m")),
    ("HF:owner/repo:IQ2_XXS", hf("owner/repo", quant="IQ2_XXS")),
    ("hf:owner/repo:UD-Q4_K_XL", hf("owner/repo", quant="UD-Q4_K_XL")),
    ("hf:owner/repo:Q4_K_M#v1.0", hf("owner/repo", quant="Q4_K_M", revision="v1.0")),
    ("owner/repo:Q8_0#refs/pr/2", hf("owner/repo", quant="Q8_0", revision="refs/pr/2")),
    (f"hf:owner/repo:Q4_K_M#{COMMIT}", hf("owner/repo", quant="Q4_K_M", revision=COMMIT)),
    ("hf:Org_1/My.Model-v2_GGUF:F16", hf("Org_1/My.Model-v2_GGUF", quant="F16")),
    # one file / folder
    (
        "hf:owner/repo/path/in/repo.gguf#rev",
        hf("owner/repo", path="path/in/repo.gguf", revision="rev"),
    ),
    ("hf:owner/repo/model.gguf", hf("owner/repo", path="model.gguf")),
    ("owner/repo/model.gguf", hf("owner/repo", path="model.gguf")),
    ("hf:owner/repo/sub/dir/", hf("owner/repo", path="sub/dir", is_dir=True)),
    ("hf:owner/repo/sub/dir/#main", hf("owner/repo", path="sub/dir", is_dir=True, revision="main")),
    ("hf:owner/repo/my model.gguf", hf("owner/repo", path="my model.gguf")),
    ("hf:owner/repo/a:b@c%20.gguf", hf("owner/repo", path="a:b@c%20.gguf")),
    # whole repository
    ("hf:owner/repo", hf("owner/repo")),
    ("owner/repo", hf("owner/repo")),
    ("  owner/repo\n", hf("owner/repo")),
    ("hf:owner/repo/", hf("owner/repo")),
    ("owner/repo#main", hf("owner/repo", revision="main")),
    ("owner/repo#a#b", hf("owner/repo", revision="a#b")),
    (f"hf:owner/repo#{COMMIT}", hf("owner/repo", revision=COMMIT)),
    # repository types
    ("datasets/owner/repo", hf("owner/repo", repo_type="dataset")),
    ("hf:datasets/owner/repo", hf("owner/repo", repo_type="dataset")),
    (
        "hf:datasets/owner/repo/data/train.csv#v2",
        hf("owner/repo", repo_type="dataset", path="data/train.csv", revision="v2"),
    ),
    ("spaces/owner/repo", hf("owner/repo", repo_type="space")),
    ("hf:spaces/owner/repo/app.py", hf("owner/repo", repo_type="space", path="app.py")),
    ("models/owner/repo", hf("owner/repo")),
    # two words
    ("owner/repo model.gguf", hf("owner/repo", path="model.gguf")),
    ("hf:owner/repo model.gguf", hf("owner/repo", path="model.gguf")),
    ("  owner/repo \t sub/dir/model.gguf  ", hf("owner/repo", path="sub/dir/model.gguf")),
    ("owner/repo model.gguf#v2", hf("owner/repo", path="model.gguf", revision="v2")),
    ("owner/repo#v2 model.gguf", hf("owner/repo", path="model.gguf", revision="v2")),
    ("owner/repo sub/", hf("owner/repo", path="sub", is_dir=True)),
    (
        "datasets/owner/repo data/train.csv",
        hf("owner/repo", repo_type="dataset", path="data/train.csv"),
    ),
    (
        "https://huggingface.co/owner/repo model.gguf",
        hf("owner/repo", path="model.gguf"),
    ),
    # hf:// URIs
    ("hf://owner/repo", hf("owner/repo")),
    ("hf://owner/repo/", hf("owner/repo")),
    ("hf://owner/repo@main/x.gguf", hf("owner/repo", revision="main", path="x.gguf")),
    ("hf://owner/repo/dir/", hf("owner/repo", path="dir", is_dir=True)),
    (
        "hf://datasets/owner/repo@refs%2Fpr%2F1/data/",
        hf("owner/repo", repo_type="dataset", revision="refs/pr/1", path="data", is_dir=True),
    ),
    ("hf://owner/repo@refs/pr/1/x.gguf", hf("owner/repo", revision="refs/pr/1", path="x.gguf")),
    ("hf://owner/repo@refs/pr/1", hf("owner/repo", revision="refs/pr/1")),
    (
        "hf://datasets/owner/repo@refs/convert/parquet/default/train/0.parquet",
        hf(
            "owner/repo",
            repo_type="dataset",
            revision="refs/convert/parquet",
            path="default/train/0.parquet",
        ),
    ),
    ("hf://owner/repo@feature%2Fx", hf("owner/repo", revision="feature/x")),
    ("hf://spaces/owner/repo/app.py", hf("owner/repo", repo_type="space", path="app.py")),
    ("hf://owner/repo/file@2.txt", hf("owner/repo", path="file@2.txt")),
    ("hf://owner/repo/a#b.gguf", hf("owner/repo", path="a#b.gguf")),
    # plain URLs, kept as given
    ("https://example.com/model.bin?x=1#frag", url("https://example.com/model.bin?x=1#frag")),
    ("HTTP://Example.com/x", url("HTTP://Example.com/x")),
    ("http://127.0.0.1:9/file.gguf", url("http://127.0.0.1:9/file.gguf")),
    ("https://cdn-lfs.huggingface.co/repos/x/y", url("https://cdn-lfs.huggingface.co/repos/x/y")),
    ("https://[::1]:8080/a", url("https://[::1]:8080/a")),
]


@pytest.mark.parametrize(("text", "expected"), FORMS, ids=[t for t, _ in FORMS])
def test_forms(text: str, expected: ModelRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


# Page URLs: the same paths on every public host.
PAGE_PATHS: list[tuple[str, ModelRef]] = [
    ("/owner/repo", hf("owner/repo")),
    ("/owner/repo/", hf("owner/repo")),
    ("/owner/repo?library=transformers", hf("owner/repo")),
    ("/owner/repo/blob/main/model.gguf", hf("owner/repo", revision="main", path="model.gguf")),
    (
        "/owner/repo/resolve/main/sub/model.gguf?download=true",
        hf("owner/repo", revision="main", path="sub/model.gguf"),
    ),
    ("/owner/repo/raw/v1/config.json", hf("owner/repo", revision="v1", path="config.json")),
    ("/owner/repo/blob/main/README.md#usage", hf("owner/repo", revision="main", path="README.md")),
    (
        "/owner/repo/blob/refs%2Fpr%2F1/model.gguf",
        hf("owner/repo", revision="refs/pr/1", path="model.gguf"),
    ),
    (
        "/owner/repo/resolve/refs/pr/12/a/model.gguf",
        hf("owner/repo", revision="refs/pr/12", path="a/model.gguf"),
    ),
    (
        "/datasets/owner/repo/blob/refs/convert/parquet/default/train/0.parquet",
        hf(
            "owner/repo",
            repo_type="dataset",
            revision="refs/convert/parquet",
            path="default/train/0.parquet",
        ),
    ),
    (
        "/owner/repo/blob/feature/x/model.gguf",  # ambiguous: the first segment is the revision
        hf("owner/repo", revision="feature", path="x/model.gguf"),
    ),
    (
        "/owner/repo/blob/feature%2Fx/model.gguf",
        hf("owner/repo", revision="feature/x", path="model.gguf"),
    ),
    (
        f"/owner/repo/resolve/{COMMIT}/model.gguf",
        hf("owner/repo", revision=COMMIT, path="model.gguf"),
    ),
    (
        "/owner/repo/blob/main/my%20dir/a%23b.gguf",
        hf("owner/repo", revision="main", path="my dir/a#b.gguf"),
    ),
    ("/owner/repo/tree/main", hf("owner/repo", revision="main")),
    ("/owner/repo/tree/main/", hf("owner/repo", revision="main")),
    ("/owner/repo/tree", hf("owner/repo")),
    ("/owner/repo/tree/refs%2Fpr%2F3", hf("owner/repo", revision="refs/pr/3")),
    (
        "/owner/repo/tree/v1.0/sub/dir",
        hf("owner/repo", revision="v1.0", path="sub/dir", is_dir=True),
    ),
    (
        "/owner/repo/tree/main/sub/dir/",
        hf("owner/repo", revision="main", path="sub/dir", is_dir=True),
    ),
    ("/datasets/owner/repo", hf("owner/repo", repo_type="dataset")),
    (
        "/datasets/owner/repo/tree/main/data",
        hf("owner/repo", repo_type="dataset", revision="main", path="data", is_dir=True),
    ),
    ("/spaces/owner/repo", hf("owner/repo", repo_type="space")),
    (
        "/spaces/owner/repo/blob/main/app.py",
        hf("owner/repo", repo_type="space", revision="main", path="app.py"),
    ),
]
PUBLIC_BASES = [
    "https://huggingface.co",
    "https://www.huggingface.co",
    "https://hf.co",
    "http://huggingface.co",
    "HTTPS://HuggingFace.CO",
    "huggingface.co",
    "hf.co",
]


@pytest.mark.parametrize("base", PUBLIC_BASES)
@pytest.mark.parametrize(("path", "expected"), PAGE_PATHS, ids=[p for p, _ in PAGE_PATHS])
def test_page_urls_on_public_hosts(base: str, path: str, expected: ModelRef) -> None:
    ref = parse_ref(base + path)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(("path", "expected"), PAGE_PATHS, ids=[p for p, _ in PAGE_PATHS])
def test_page_urls_on_custom_endpoint(
    path: str, expected: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_ref("http://127.0.0.1:8123" + path, endpoint="http://127.0.0.1:8123") == expected
    # read from HF_ENDPOINT at call time when endpoint= is not given
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123/")
    assert parse_ref("http://127.0.0.1:8123" + path) == expected
    # endpoint="" means: no custom endpoint, even with HF_ENDPOINT set
    assert parse_ref("http://127.0.0.1:8123" + path, endpoint="").kind == "url"


def test_custom_endpoint_matching() -> None:
    ep = "http://127.0.0.1:8123"
    file_url = "/owner/repo/resolve/main/x.gguf"
    expected = hf("owner/repo", revision="main", path="x.gguf")
    # another port, host or scheme is another origin: a plain URL
    for other in ("http://127.0.0.1:8124", "http://localhost:8123", "https://127.0.0.1:8123"):
        assert parse_ref(other + file_url, endpoint=ep) == url(other + file_url)
    # routes that name no repository on a custom endpoint are plain URLs, not errors
    assert parse_ref(f"{ep}/files/a/b/c.bin", endpoint=ep) == url(f"{ep}/files/a/b/c.bin")
    assert parse_ref(f"{ep}/", endpoint=ep) == url(f"{ep}/")
    # default ports, path prefixes, a malformed endpoint (ignored)
    assert (
        parse_ref("https://hub.example:443" + file_url, endpoint="https://hub.example") == expected
    )
    prefixed = "https://mirror.example/hf"
    assert parse_ref(prefixed + file_url, endpoint=prefixed) == expected
    assert parse_ref("https://mirror.example" + file_url, endpoint=prefixed).kind == "url"
    assert parse_ref(ep + file_url, endpoint="not a url").kind == "url"
    assert parse_ref(ep + file_url, endpoint="http://h:99999").kind == "url"
    # the public hosts keep working with a custom endpoint
    assert parse_ref("https://hf.co" + file_url, endpoint=ep) == expected


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

ERRORS: list[tuple[str, str]] = [
    ("", "empty"),
    ("   \n\t", "empty"),
    ("owner", "expected owner/repo"),
    ("datasets/owner", "expected datasets/owner/repo"),
    ("-owner/repo", "must not start or end"),
    ("owner/repo.", "must not start or end"),
    ("ow--ner/repo", "'--'"),
    ("owner/re..po", "'..'"),
    ("owner/" + "a" * 97, "longer than 96"),
    ("owner/repo.git", ".git"),
    ("own!er/repo", "contains '!'"),
    ("owner/repö", "contains 'ö'"),
    ("owner/repo@main", "revision goes after '#'"),
    ("/abs/path.gguf", "owner is empty"),
    ("hf:owner/repo/../x", "'..' part"),
    ("hf:owner/repo/./x", "'.' part"),
    ("hf:owner/repo/a//b", "empty part"),
    ("hf:owner/repo/a\\b", "backslash"),
    ("hf:owner/repo/a\x00b", "control character"),
    ("hf:owner/repo/a\u202eb", "control character"),
    ("hf:owner/repo/a /b", "whitespace"),
    ("owner/repo /abs/x.gguf", "absolute"),
    ("owner/repo C:/x.gguf", "Windows"),
    ("owner/repo:Q4_K_M/x.gguf", "quant comes last"),
    ("owner/repo:Q4+K", "the quant 'Q4+K' contains '+'"),
    ("owner/repo:", "quant after ':' is empty"),
    ("owner:Q4_K_M", "a quant needs a repository"),
    ("owner/repo#", "revision after '#' is empty"),
    ("owner/repo#a..b", "'..'"),
    ("owner/repo#a~1", "git does not allow"),
    ("owner/repo#a:b", "git does not allow"),
    ("owner/repo#/a", "empty '/'-separated part"),
    ("owner/repo:Q4#a\x01b", "control character"),
    ("owner/repo#" + "r" * 300, "longer than 255"),
    ("owner/repo a.gguf b.gguf", "too many words"),
    ("owner/repo#v1 file.gguf#v2", "two revisions"),
    ("owner/repo:Q4_K_M extra", "unexpected whitespace"),
    ("owner/repo #", "file name (second word) is empty"),
    ("ftp://example.com/x.gguf", "scheme 'ftp:' is not supported"),
    ("file:///etc/passwd", "scheme 'file:' is not supported"),
    ("javascript:alert(1)", "scheme 'javascript:' is not supported"),
    ("s3://bucket/key", "scheme 's3:' is not supported"),
    ("C:\\models\\x.gguf", "Windows"),
    ("https://", "no host"),
    ("https://[::1/x", "malformed"),
    ("https://example.com:99999/x", "malformed"),
    ("https://example.com/a b", "whitespace"),
    ("https://huggingface.co", "not a repository, file or folder page"),
    ("https://huggingface.co/owner", "not a repository, file or folder page"),
    ("https://huggingface.co/owner/repo/discussions/1", "not a repository, file or folder page"),
    ("https://huggingface.co/models?search=llama", "not a repository, file or folder page"),
    ("https://huggingface.co/kernels/owner/repo", "not a repository, file or folder page"),
    ("https://huggingface.co/owner/repo/blob/main", "names no file"),
    ("https://huggingface.co/owner/repo/resolve/refs/pr/1", "names no file"),
    ("https://huggingface.co/owner/repo/resolve", "names no revision"),
    ("https://huggingface.co/owner/repo/blob/main/%ff.gguf", "percent-encoded"),
    ("https://huggingface.co/owner/repo/blob/main/a/%2e%2e/b", "'..' part"),
    ("https://huggingface.co/own--er/repo", "'--'"),
    ("hf://", "nothing follows"),
    ("hf://owner", "expected owner/repo"),
    ("hf://owner/repo@", "revision after '@' is empty"),
    ("hf://owner@main/repo", "expected owner/repo before '@'"),
    ("hf://kernels/owner/repo", "kernels are not supported"),
    ("hf://owner/repo:Q4_K_M", "quant goes last"),
    ("datasets/datasets/repo", "names a repository type"),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS, ids=[repr(t)[:60] for t, _ in ERRORS])
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, NbmodelsError)
    message = str(err)
    assert fragment in err.fact, err.fact
    assert "Invalid model reference" in message
    assert repr(text.strip()[:200]) in message or text.strip()[:20] in message
    assert ACCEPTED_FORMS in message
    assert err.hint is not None
    assert ACCEPTED_FORMS in err.hint
    assert "\n" not in err.fact  # one line; the forms come in the hint


def test_error_message_hides_secrets_and_truncates() -> None:
    with pytest.raises(RefError) as info:
        parse_ref("ftp://user:s3cret@example.com/x?token=abc123#frag")
    assert "s3cret" not in str(info.value)
    assert "abc123" not in str(info.value)
    assert "frag" not in str(info.value)
    assert "ftp://example.com/x?…" in str(info.value)

    with pytest.raises(RefError) as info:
        parse_ref("https://user:s3cret@example.com/a b?sig=xyz")
    assert "s3cret" not in str(info.value)
    assert "xyz" not in str(info.value)

    token = "hf_" + "A1b2C3d4E5" * 4
    with pytest.raises(RefError) as info:
        parse_ref(token)
    assert token not in str(info.value)

    with pytest.raises(RefError) as info:
        parse_ref("owner/" + "x" * 10_000)
    assert len(info.value.fact) < 500


def test_one_redactor_for_free_text_and_quoted_references() -> None:
    """Free text (error bodies, exception messages) and a quoted reference lose the same
    secrets: URL userinfo, queries and fragments, Hugging Face tokens long and short (also
    followed by "_"), Authorization values and signed parameters (issue 13: one redactor,
    the union of the two rules there were)."""
    long_token = "hf_" + "A1b2C3d4E5" * 4
    short_token = "hf_AbCdEfGh12345"
    text = (
        "GET https://user:pw0rd@cdn.example/x.gguf?X-Amz-Signature=s3cr3t#frag failed; "
        f"Authorization: Bearer abc.def-123, {long_token}_tail, {short_token}, sig=sigvalue"
    )
    for shown in (redact_text(text), redact_reference(text)):
        for secret in ("pw0rd", "s3cr3t", "frag", long_token, short_token, "abc.def", "sigvalue"):
            assert secret not in shown, (secret, shown)
    assert "GET https://cdn.example/x.gguf?… failed" in redact_text(text)
    assert redact_text("hf://datasets/o/r@main/a#b.txt") == "hf://datasets/o/r@main/a#b.txt"
    for typed in (f"owner/repo file Bearer {short_token}", f"o/r a {short_token}_x"):
        with pytest.raises(RefError) as info:
            parse_ref(typed)
        assert short_token not in str(info.value)


def test_non_string_input() -> None:
    with pytest.raises(RefError, match="must be a string"):
        parse_ref(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# ModelRef itself
# --------------------------------------------------------------------------------------------


def test_canonical_str() -> None:
    assert str(hf("owner/repo")) == "hf:owner/repo"
    assert str(hf("owner/repo", quant="Q4_K_M", revision="v1")) == "hf:owner/repo:Q4_K_M#v1"
    assert str(hf("owner/repo", path="a/b.gguf")) == "hf:owner/repo/a/b.gguf"
    assert str(hf("owner/repo", path="d", is_dir=True, revision="main")) == "hf:owner/repo/d/#main"
    assert str(hf("owner/repo", repo_type="dataset")) == "hf:datasets/owner/repo"
    assert str(hf("owner/repo", repo_type="space", path="app.py")) == "hf:spaces/owner/repo/app.py"
    assert str(hf("owner/repo", path="a#b")) == "hf://owner/repo/a#b"
    assert str(hf("owner/repo", path="a#b", revision="x/y")) == "hf://owner/repo@x%2Fy/a#b"
    assert (
        str(hf("owner/repo", path="a#b", revision="refs/pr/1")) == "hf://owner/repo@refs/pr/1/a#b"
    )
    assert str(url("https://example.com/x?y")) == "https://example.com/x?y"


def test_pinned_and_repo_url_path() -> None:
    assert not hf("owner/repo").pinned
    assert not hf("owner/repo", revision=COMMIT).pinned
    assert hf("owner/repo", quant="Q4_K_M").pinned
    assert hf("owner/repo", path="x.gguf").pinned
    assert hf("owner/repo", path="d", is_dir=True).pinned
    assert url("https://example.com/x").pinned
    assert hf("o/r").repo_url_path == "o/r"
    assert hf("o/r", repo_type="dataset").repo_url_path == "datasets/o/r"
    assert hf("o/r", repo_type="space").repo_url_path == "spaces/o/r"
    with pytest.raises(ValueError, match="no Hugging Face repository"):
        _ = url("https://example.com/x").repo_url_path


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "hf"}, "needs a repository id"),
        ({"kind": "hf", "repo_id": "a/b", "quant": "Q4", "path": "x"}, "not both"),
        ({"kind": "hf", "repo_id": "a/b", "is_dir": True}, "is_dir needs a folder path"),
        ({"kind": "hf", "repo_id": "a/b", "url": "https://e.com/x"}, "has no url"),
        ({"kind": "hf", "repo_id": "a/b", "repo_type": "kernel"}, "repo_type must be"),
        ({"kind": "hf", "repo_id": "a/b/c"}, "expected a repository id"),
        ({"kind": "hf", "repo_id": "a/b", "revision": ""}, "revision is empty"),
        ({"kind": "hf", "repo_id": "a/b", "path": ""}, "file path is empty"),
        ({"kind": "hf", "repo_id": "a/b", "quant": ""}, "quant is empty"),
        ({"kind": "url"}, "needs a url"),
        ({"kind": "url", "url": "https://e.com/x", "repo_id": "a/b"}, "only a url"),
        ({"kind": "url", "url": "ftp://e.com/x"}, "only http and https"),
        ({"kind": "url", "url": " https://e.com/x"}, "whitespace"),
        ({"kind": "url", "url": "https://hf.co/a/b"}, "Hub reference"),
        ({"kind": "other", "url": "https://e.com/x"}, "kind must be"),
    ],
)
def test_invalid_model_ref(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(RefError, match="Invalid ModelRef") as info:
        ModelRef(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_model_ref_is_frozen_and_hashable() -> None:
    ref = hf("owner/repo", quant="Q4_K_M")
    with pytest.raises(AttributeError):
        ref.quant = "Q8_0"  # type: ignore[misc]
    assert len({ref, hf("owner/repo", quant="Q4_K_M")}) == 1


# --------------------------------------------------------------------------------------------
# GGUF names
# --------------------------------------------------------------------------------------------

QUANT_NAMES: list[tuple[str, tuple[str | None, int | None, int | None]]] = [
    ("Model-Q4_K_M.gguf", ("Q4_K_M", None, None)),
    ("Model-Q8_0-00001-of-00003.gguf", ("Q8_0", 1, 3)),
    ("llama-2-7b.Q4_K_M.gguf", ("Q4_K_M", None, None)),
    ("qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf", ("q4_k_m", 2, 2)),
    ("Meta-Llama-3-8B-Instruct-IQ2_XXS.gguf", ("IQ2_XXS", None, None)),
    ("Model-BF16.gguf", ("BF16", None, None)),
    ("phi-3-mini-4k-instruct-fp16.gguf", ("fp16", None, None)),
    ("Model-f32.gguf", ("f32", None, None)),
    ("gpt-oss-20b-MXFP4.gguf", ("MXFP4", None, None)),
    ("Model-TQ1_0.gguf", ("TQ1_0", None, None)),
    ("Model-Q4_0_4_4.gguf", ("Q4_0_4_4", None, None)),
    ("gemma-3-27b-it-UD-Q4_K_XL.gguf", ("UD-Q4_K_XL", None, None)),
    ("Model-Q4_K_M.GGUF", ("Q4_K_M", None, None)),
    ("Q4_K_M.gguf", ("Q4_K_M", None, None)),
    ("Model-Q4_K_M/Model-Q4_K_M-00001-of-00004.gguf", ("Q4_K_M", 1, 4)),
    ("Q4_K_M/model-00002-of-00002.gguf", ("Q4_K_M", 2, 2)),
    ("deep/Model-Q6_K/model.gguf", ("Q6_K", None, None)),
    ("Model-Q4_K_M-00000-of-00003.gguf", (None, None, None)),  # part 0 is not a split
    ("Model-Q4_K_M-00004-of-00003.gguf", (None, None, None)),
    ("mmproj-model-f16.gguf", (None, None, None)),
    ("Model-mmproj-F16.gguf", (None, None, None)),
    ("Model.imatrix.gguf", (None, None, None)),
    ("model.gguf", (None, None, None)),
    ("Llama-3-8B.gguf", (None, None, None)),
    ("model-00001-of-00002.gguf", (None, 1, 2)),
    ("README.md", (None, None, None)),
    ("model-Q4_K_M.safetensors", (None, None, None)),
    ("", (None, None, None)),
]


@pytest.mark.parametrize(("name", "expected"), QUANT_NAMES, ids=[n for n, _ in QUANT_NAMES])
def test_split_quant_name(name: str, expected: tuple[str | None, int | None, int | None]) -> None:
    assert split_quant_name(name) == expected


def test_is_sidecar() -> None:
    assert is_sidecar("mmproj-model-f16.gguf")
    assert is_sidecar("sub/MMPROJ-F16.gguf")
    assert is_sidecar("imatrix.dat")
    assert is_sidecar("Model.imatrix.gguf")
    assert not is_sidecar("Model-Q4_K_M.gguf")
    assert not is_sidecar("mmproj/Model-Q4_K_M.gguf")  # only the file name counts


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits + "_"
_word = st.text(_ALNUM, min_size=1, max_size=6)
_RESERVED = {"models", "datasets", "spaces", "kernels", "buckets"}


def _hub_name(parts: tuple[str, list[tuple[str, str]]]) -> str:
    first, rest = parts
    name = (first + "".join(sep + word for sep, word in rest))[:96].rstrip("-.")
    return "x" if not name or name in _RESERVED or name.endswith(".git") else name


hub_names = st.tuples(_word, st.lists(st.tuples(st.sampled_from("-._"), _word), max_size=3)).map(
    _hub_name
)


def _path_segment(seg: str) -> str:
    seg = seg.strip()
    if seg in {"", ".", ".."} or (len(seg) == 2 and seg[1] == ":"):  # not C: (a Windows drive)
        return "f"
    return seg


_path_char = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"), exclude_characters="/\\"
)
path_segments = st.one_of(
    st.text(_path_char, min_size=1, max_size=12),
    st.sampled_from(["model.gguf", "a#b", "x@y", "%2F", "c:d", "my file", "é.gguf"]),
).map(_path_segment)
paths = st.lists(path_segments, min_size=1, max_size=3).map("/".join)
revisions = st.one_of(
    st.sampled_from(["main", "v1.0", "refs/pr/1", "refs/pr/42", "refs/convert/parquet", COMMIT]),
    st.sampled_from(["feature/x", "a#b", "rel@1", "x%2Fy", "ünï", "refs/pr/1x", "a.b_c-d"]),
    st.lists(st.text(_ALNUM + "-", min_size=1, max_size=10), min_size=1, max_size=3).map("/".join),
)
quants = st.one_of(
    st.sampled_from(["Q4_K_M", "q8_0", "IQ2_XXS", "UD-Q4_K_XL", "F16", "Q4.K"]),
    st.text(_ALNUM + ".-", min_size=1, max_size=12),
)
plain_urls = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["https", "http", "HTTPS"]),
    st.sampled_from(["example.com", "cdn.example.org:8443", "[::1]:9000"]),
    st.text(string.ascii_letters + string.digits + "/._-?=&%#", max_size=30),
).map(lambda u: ModelRef("url", url=u))


@st.composite
def hub_refs(draw: st.DrawFn) -> ModelRef:
    shape = draw(st.sampled_from(["repo", "quant", "file", "dir"]))
    return ModelRef(
        "hf",
        f"{draw(hub_names)}/{draw(hub_names)}",
        draw(st.sampled_from(["model", "dataset", "space"])),
        revision=draw(st.none() | revisions),
        path=draw(paths) if shape in {"file", "dir"} else None,
        is_dir=shape == "dir",
        quant=draw(quants) if shape == "quant" else None,
    )


model_refs = st.one_of(hub_refs(), plain_urls)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(model_refs)
def test_round_trip(ref: ModelRef) -> None:
    text = str(ref)
    assert parse_ref(text, endpoint="") == ref
    assert parse_ref(f"  {text}\n", endpoint="") == ref


_FRAGMENTS = [
    "hf:", "hf://", "https://", "http://", "huggingface.co/", "hf.co/", "127.0.0.1:8123/",
    "owner", "repo", "/", "//", ":", "#", "@", "?", "%2F", "%ff", "%2e%2e", "..", ".", "-", "--",
    "refs/pr/1", "refs/convert/parquet", "datasets/", "spaces/", "kernels/", "blob/", "resolve/",
    "tree/", "main", "Q4_K_M", "model.gguf", " ", "\t", "\\", "\x00", "é", "\u202e", "C:",
]  # fmt: skip
ENDPOINTS = ["", "http://127.0.0.1:8123", "https://mirror.example/hf"]


@FAST
@given(
    st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join),
    ),
    st.sampled_from(ENDPOINTS),
)
def test_any_text_gives_ref_or_ref_error(text: str, endpoint: str) -> None:
    try:
        ref = parse_ref(text, endpoint=endpoint)
    except RefError as exc:
        assert exc.hint is not None
        assert ACCEPTED_FORMS in str(exc)
        return
    assert isinstance(ref, ModelRef)
    assert parse_ref(str(ref), endpoint=endpoint) == ref  # what parses, round-trips


_quant_tags = st.one_of(
    st.sampled_from(["Q4_K_M", "Q8_0", "IQ2_XXS", "IQ4_NL", "Q2_K", "F16", "BF16", "TQ1_0"]),
    st.from_regex(r"[Qq][2-8]_[Kk]_[SMLsml]", fullmatch=True),
)


@FAST
@given(
    st.lists(st.text(string.ascii_letters + string.digits, min_size=1, max_size=6), max_size=3),
    st.sampled_from("-."),
    _quant_tags,
    st.none() | st.integers(1, 99).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    st.booleans(),
)
def test_split_quant_name_generated(
    words: list[str],
    sep: str,
    quant: str,
    split: tuple[int, int] | None,
    in_folder: bool,
) -> None:
    prefix = "-".join(words)
    if is_sidecar(prefix) or (words and words[-1].upper() == "UD"):
        return
    name = f"{prefix}{sep}{quant}" if prefix else quant
    if split is not None:
        name += f"-{split[0]:05d}-of-{split[1]:05d}"
    name += ".gguf"
    if in_folder:
        name = f"{prefix or 'm'}-{quant}/{name}"
    part, count = split if split is not None else (None, None)
    assert split_quant_name(name) == (quant, part, count)
    # a sidecar with the same shape has no quant
    assert split_quant_name("mmproj-" + name.rsplit("/", 1)[-1])[0] is None


@FAST
@given(st.text(max_size=60))
def test_split_quant_name_any_text(name: str) -> None:
    quant, part, count = split_quant_name(name)
    assert quant is None or quant in name
    assert (part is None) == (count is None)
    if part is not None and count is not None:
        assert 1 <= part <= count
