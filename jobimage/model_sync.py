"""`t2v model sync`: fill `<model_dir>/<name>/` from the hub or a folder, verify it, mark it READY;
`t2v model publish`: put what the service needs of a synced model (its tokenizer.json) in object storage.

The model-cache DaemonSet runs exactly these on every GPU node. Sync is safe to
interrupt: READY is removed before anything changes and written last, files land
under a `.part` name and are renamed only once their size (and sha256 when known)
checks out, and a rerun resumes partial files and skips verified ones.

The web app counts a prompt's T5 tokens at submission with `tokenizer/tokenizer.json`
(core/tokens.py). Mochi's hub repo has only the sentencepiece files, so sync derives
that file from them with transformers, the pod's own tokenizer class; in cluster mode
the web app has no weights and reads the published copy instead.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jobcontract.errors import ContractError, StorageUnavailable
from jobcontract.records import ExitCode, tokenizer_key
from jobcontract.storage import ObjectStore, open_store
from jobimage import log
from jobimage.errors import ModelFolderError, SetupError, SyncError
from jobimage.model_folder import READY_NAME, check_model_folder, model_path

logger = log.get_logger("jobimage.model_sync")

DEFAULT_MODEL = "mochi-1-preview"
DEFAULT_REPO = "genmo/mochi-1-preview"
CHECKSUMS_NAME = "SHA256SUMS"  # optional in a source folder: "<sha256>  <path>" lines
STATE_NAME = ".sync-state.json"  # files already verified, so a resumed sync does not rehash them
CHUNK = 8 * 1024 * 1024
# The diffusers layout only: the hub repo also holds the original-format checkpoints
# (tens of GB) that MochiPipeline never reads.
DEFAULT_INCLUDE = ("model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "transformer/*", "vae/*")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
TOKENIZER_JSON = "tokenizer/tokenizer.json"  # what core/tokens.py counts with, here or from storage


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: path relative to the model folder, size, sha256 when the source knows it."""

    path: str
    size: int | None
    sha256: str | None = None


class Source(Protocol):
    """Where model files come from."""

    def describe(self) -> str: ...

    def list_files(self) -> list[RemoteFile]: ...

    def fetch(self, f: RemoteFile, part: Path) -> None:
        """Write the file to `part`, continuing a partial `part` where possible."""


class FolderSource:
    """A local folder (an NFS mount, a copy of the hub repo); stands in for the hub in tests."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SetupError(f"source folder {self.root} does not exist")

    def describe(self) -> str:
        return f"folder {self.root}"

    def list_files(self) -> list[RemoteFile]:
        sums = {}
        if (self.root / CHECKSUMS_NAME).is_file():
            for line in (self.root / CHECKSUMS_NAME).read_text().splitlines():
                if line.strip():
                    digest, name = line.split(maxsplit=1)
                    sums[name.strip().lstrip("*")] = digest.lower()
        files = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if not p.is_file() or _skipped(rel) or rel == CHECKSUMS_NAME:
                continue
            # Without a checksum list, the source's own hash is the reference for the copy.
            files.append(RemoteFile(rel, p.stat().st_size, sums.get(rel) or sha256_file(p)))
        return files

    def fetch(self, f: RemoteFile, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        src_size = (self.root / f.path).stat().st_size
        if offset > src_size:
            part.unlink()
            offset = 0
        with open(self.root / f.path, "rb") as src, open(part, "ab") as out:
            src.seek(offset)
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())


class HubSource:
    """A Hugging Face hub repo through `huggingface_hub` (which resumes its own downloads)."""

    def __init__(self, repo_id: str, revision: str | None = None, token: str | None = None) -> None:
        self.repo_id, self.revision, self.token = repo_id, revision, token

    def describe(self) -> str:
        return f"hub {self.repo_id}@{self.revision or 'main'}"

    def list_files(self) -> list[RemoteFile]:
        from huggingface_hub import HfApi

        try:
            info = HfApi(token=self.token).model_info(self.repo_id, revision=self.revision, files_metadata=True)
        except Exception as e:  # network, auth, unknown repo: all reported the same way
            raise SyncError(f"could not list {self.describe()}: {e}") from e
        files = []
        for s in info.siblings or []:
            if _skipped(s.rfilename):
                continue
            lfs = s.lfs
            sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
            files.append(RemoteFile(s.rfilename, s.size, sha))
        return files

    def fetch(self, f: RemoteFile, part: Path) -> None:
        from huggingface_hub import hf_hub_download

        staging = part.parent / ".hub"
        try:
            got = hf_hub_download(self.repo_id, f.path, revision=self.revision, token=self.token,
                                  local_dir=staging)
        except Exception as e:
            raise SyncError(f"download of {f.path} from {self.describe()} failed: {e}") from e
        os.replace(got, part)


def _skipped(rel: str) -> bool:
    parts = rel.split("/")
    return rel in (READY_NAME, STATE_NAME) or any(p.startswith(".") for p in parts) or rel.endswith(".part")


def select(files: list[RemoteFile], *, include: tuple[str, ...] = DEFAULT_INCLUDE,
           variant: str | None = "bf16") -> list[RemoteFile]:
    """Files matching `include`; where a folder has `variant` weights, only those weights."""
    chosen = [f for f in files if any(fnmatch.fnmatchcase(f.path, pat) for pat in include)]
    if not variant:
        return chosen
    tag = f".{variant}"

    def is_weight(f: RemoteFile) -> bool:
        return f.path.endswith(WEIGHT_SUFFIXES)

    folders_with_variant = {f.path.rsplit("/", 1)[0] for f in chosen if is_weight(f) and tag in f.path.rsplit("/", 1)[-1]}
    return [f for f in chosen if not (is_weight(f) and f.path.rsplit("/", 1)[0] in folders_with_variant
                                      and tag not in f.path.rsplit("/", 1)[-1])]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ready_is_valid(folder: Path) -> bool:
    """READY exists and every file it lists is present with its recorded size (no hashing)."""
    try:
        ready = json.loads((folder / READY_NAME).read_text())
        files = ready["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((folder / p).is_file() and (folder / p).stat().st_size == meta["size"] for p, meta in files.items())


def _verify(f: RemoteFile, path: Path) -> str:
    size = path.stat().st_size
    if f.size is not None and size != f.size:
        raise SyncError(f"{f.path}: size {size} bytes, expected {f.size}")
    digest = sha256_file(path)
    if f.sha256 and digest != f.sha256:
        raise SyncError(f"{f.path}: sha256 {digest}, expected {f.sha256}")
    return digest


def sync(source: Source, dest: Path, *, name: str, verify: bool = False, attempts: int = 2,
         include: tuple[str, ...] = DEFAULT_INCLUDE, variant: str | None = "bf16") -> Path:
    """Make `dest` a complete, verified copy of `source`; resumable; READY last."""
    dest.mkdir(parents=True, exist_ok=True)
    if not verify and ready_is_valid(dest):
        ensure_tokenizer_json(dest)  # a folder synced before sync derived it
        logger.info("model already synced", extra=log.kv(model=name, path=str(dest)))
        return dest
    (dest / READY_NAME).unlink(missing_ok=True)  # from here on the folder is "in progress"
    state_path = dest / STATE_NAME
    try:
        state = json.loads(state_path.read_text()) if state_path.exists() and not verify else {}
    except ValueError:
        state = {}

    files = select(source.list_files(), include=include, variant=variant)
    if not files:
        raise SyncError(f"{source.describe()} has no files matching {', '.join(include)}")
    record = {}
    t0 = time.monotonic()
    for f in files:
        target = dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        known = state.get(f.path)
        if (known and target.is_file() and known["size"] == target.stat().st_size
                and (f.sha256 is None or known["sha256"] == f.sha256)
                and (f.size is None or known["size"] == f.size)):
            record[f.path] = known
            continue
        if target.is_file():
            try:
                digest = _verify(f, target)
                record[f.path] = state[f.path] = {"size": target.stat().st_size, "sha256": digest}
                _write_json_atomic(state_path, state)
                continue
            except SyncError:
                target.unlink()
        part = target.with_name(target.name + ".part")
        for attempt in range(1, attempts + 1):
            source.fetch(f, part)
            try:
                digest = _verify(f, part)
                break
            except SyncError as e:
                logger.warning("file failed verification", extra=log.kv(file=f.path, attempt=attempt, error=str(e)))
                part.unlink(missing_ok=True)
                if attempt == attempts:
                    raise
        os.replace(part, target)
        record[f.path] = state[f.path] = {"size": target.stat().st_size, "sha256": digest}
        _write_json_atomic(state_path, state)
        logger.info("file synced", extra=log.kv(file=f.path, bytes=record[f.path]["size"]))

    check_model_folder_contents(dest)
    derived = ensure_tokenizer_json(dest)
    if derived is not None and TOKENIZER_JSON not in record:
        record[TOKENIZER_JSON] = {"size": derived.stat().st_size, "sha256": sha256_file(derived)}
    _write_json_atomic(dest / READY_NAME, {"model": name, "source": source.describe(), "files": record,
                                           "synced_at": time.time()})
    state_path.unlink(missing_ok=True)
    logger.info("model synced", extra=log.kv(model=name, path=str(dest), files=len(record),
                                             seconds=round(time.monotonic() - t0, 1)))
    return dest


def check_model_folder_contents(folder: Path) -> None:
    """Everything `check_model_folder` wants except READY (which sync writes right after)."""
    try:
        check_model_folder(folder)
    except ModelFolderError as e:
        if f"missing: {READY_NAME} " not in str(e):
            raise SyncError(f"source is not a Mochi pipeline folder: {e}") from e


def ensure_tokenizer_json(folder: Path) -> Path | None:
    """The folder's `tokenizer/tokenizer.json`, derived from its sentencepiece files where the source had
    none (the pod's `AutoTokenizer` makes the same conversion at load); None where transformers is not
    installed to derive it."""
    path = folder / TOKENIZER_JSON
    if path.is_file():
        return path
    try:
        from transformers import AutoTokenizer
    except ImportError:
        logger.warning("no tokenizer.json, and no transformers here to derive one: only the pod counts prompt tokens",
                       extra=log.kv(path=str(path)))
        return None
    try:
        backend = AutoTokenizer.from_pretrained(path.parent).backend_tokenizer
    except (OSError, ValueError, AttributeError) as e:
        raise SyncError(f"could not derive {path} from the folder's tokenizer files: {e}") from e
    tmp = path.with_name(f".{path.name}.tmp")
    backend.save(str(tmp))
    os.replace(tmp, path)
    logger.info("tokenizer.json derived", extra=log.kv(path=str(path), bytes=path.stat().st_size))
    return path


def publish(folder: Path, store: ObjectStore, *, name: str) -> str:
    """Put a synced model's tokenizer.json in object storage under `tokenizer_key(name)`; returns the key."""
    check_model_folder(folder)  # READY included: a folder still syncing is not published
    path = ensure_tokenizer_json(folder)
    if path is None:
        raise SetupError(f"{folder / TOKENIZER_JSON} is missing and cannot be derived here (install transformers)")
    key = tokenizer_key(name)
    store.put_file(key, path, content_type="application/json")
    logger.info("tokenizer published", extra=log.kv(model=name, key=key, bytes=path.stat().st_size))
    return key


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `t2v model publish`."""
    parser.add_argument("name", nargs="?", default=DEFAULT_MODEL, help="model folder name (synced first)")
    parser.add_argument("--dir", dest="model_dir", type=Path, default=os.environ.get("T2V_MODEL_DIR"),
                        help="folder holding one subfolder per model (default: $T2V_MODEL_DIR)")
    parser.add_argument("--storage", default=os.environ.get("T2V_STORAGE_URL"),
                        help="object storage URL, as the service's T2V_STORAGE_URL (default: $T2V_STORAGE_URL)")


def run_publish(args: argparse.Namespace) -> int:
    """Run `t2v model publish`; returns 0, 75 (storage trouble: retry) or 78 (nothing to publish, no storage)."""
    log.setup()
    if not args.model_dir or not args.storage:
        print("t2v model publish: needs a model folder (--dir or T2V_MODEL_DIR) and object storage "
              "(--storage or T2V_STORAGE_URL)", file=sys.stderr)
        return int(ExitCode.BAD_SETUP)
    try:
        print(publish(model_path(Path(args.model_dir), args.name), open_store(args.storage), name=args.name))
        return 0
    except (StorageUnavailable, SyncError, OSError) as e:
        print(f"t2v model publish: {e} (rerun to retry)", file=sys.stderr)
        return int(ExitCode.RETRYABLE)
    except (SetupError, ContractError) as e:  # no synced folder; a bad storage URL or refused credentials
        print(f"t2v model publish: {e}", file=sys.stderr)
        return int(ExitCode.BAD_SETUP)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `t2v model sync`."""
    parser.add_argument("name", nargs="?", default=DEFAULT_MODEL,
                        help=f"model folder name: {DEFAULT_MODEL} (from the hub or --from) or tiny (built locally)")
    parser.add_argument("--dir", dest="model_dir", type=Path, default=os.environ.get("T2V_MODEL_DIR"),
                        help="folder holding one subfolder per model (default: $T2V_MODEL_DIR)")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="copy from this local folder instead of downloading from the hub")
    parser.add_argument("--repo", default=DEFAULT_REPO, help=f"hub repo id (default: {DEFAULT_REPO})")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    parser.add_argument("--verify", action="store_true", help="re-hash every file even if the folder is READY")
    parser.add_argument("--variant", default="bf16",
                        help="where a component has weights of this variant, fetch only those ('' for all)")
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help=f"files to fetch (repeatable; default: {' '.join(DEFAULT_INCLUDE)})")


def run(args: argparse.Namespace) -> int:
    """Run `t2v model sync`; returns 0, 75 (retry may help) or 78 (bad arguments or source)."""
    from jobimage.models.tiny import TINY_NAME, ensure_tiny_model

    log.setup()
    if not args.model_dir:
        print("t2v model sync: no model folder: pass --dir or set T2V_MODEL_DIR", file=sys.stderr)
        return int(ExitCode.BAD_SETUP)
    try:
        dest = model_path(Path(args.model_dir), args.name)
        if args.name == TINY_NAME and args.source is None:
            print(ensure_tiny_model(Path(args.model_dir)))
            return 0
        source: Source = (FolderSource(args.source) if args.source is not None else
                          HubSource(args.repo, args.revision, os.environ.get("HF_TOKEN")))
        print(sync(source, dest, name=args.name, verify=args.verify, variant=args.variant or None,
                   include=tuple(args.include) if args.include else DEFAULT_INCLUDE))
        return 0
    except SetupError as e:
        print(f"t2v model sync: {e}", file=sys.stderr)
        return int(ExitCode.BAD_SETUP)
    except (SyncError, OSError) as e:
        print(f"t2v model sync: {e} (rerun to resume)", file=sys.stderr)
        return int(ExitCode.RETRYABLE)


def main(argv: list[str] | None = None) -> int:
    """Standalone `python -m jobimage.model_sync` for the model-cache DaemonSet image."""
    parser = argparse.ArgumentParser(prog="python -m jobimage.model_sync", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
