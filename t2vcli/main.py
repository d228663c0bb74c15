"""`t2v`: serve, controller, model sync, and client commands for a running server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from t2vcli.client import Client, ClientError
from t2vcli.progress import Reporter
from core import log
from core.errors import APIError
from core.params import TEXT_FIELDS
from jobcontract.video import VideoParams


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


def _print(obj: dict, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(obj, indent=2))
        return
    if obj.get("object") == "video":
        extra = ""
        if obj["status"] == "queued" and obj.get("queue_position"):
            extra = f"  position {obj['queue_position']}"
        elif obj["status"] == "in_progress":
            extra = f"  {obj['progress']}%"
        elif obj["status"] == "failed" and obj.get("error"):
            extra = f"  {obj['error']['code']}: {obj['error']['message']}"
        print(f"{obj['id']}  {obj['status']:<11}{extra}  seed={obj['seed']}  {obj['size']} {obj['seconds']}s  "
              f"{obj['prompt'][:60]!r}")
    else:
        print(json.dumps(obj, indent=2))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from webapp.app import create_app
    from core.settings import Backend, get_settings

    settings = get_settings()
    log.setup(level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    workers = []
    if settings.backend == Backend.local:
        from controller.housekeeping import Housekeeper
        from controller.local.runner import LocalRunner
        from controller.threads import start_thread

        runner = LocalRunner(settings, app.state.store)
        runner.prepare()
        app.state.runner = runner  # the queue panel reads its slots
        workers.append((runner, start_thread(runner.run_forever, "t2v-runner")))
        keeper = Housekeeper(settings, app.state.store)
        workers.append((keeper, start_thread(keeper.run_forever, "t2v-housekeeping")))
    elif args.with_controller:
        from controller.housekeeping import Housekeeper
        from controller.main import build_controller
        from controller.threads import start_thread

        ctl = build_controller(settings)
        workers.append((ctl, start_thread(ctl.run_forever, "t2v-controller")))
        keeper = Housekeeper(settings, app.state.store)
        workers.append((keeper, start_thread(keeper.run_forever, "t2v-housekeeping")))
    print(f"t2v serving on http://{args.host}:{args.port} (backend={settings.backend.value}, "
          f"db={settings.db_url.split('@')[-1]}, model={settings.model})", file=sys.stderr, flush=True)
    try:
        # log_config=None: uvicorn's own records go through core/log.py's setup like everyone else's.
        uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(), log_config=None,
                    timeout_keep_alive=settings.http_keep_alive_seconds)
    finally:
        for worker, _ in workers:
            worker.stop()
    return 0


def cmd_controller(args: argparse.Namespace) -> int:
    from controller.main import run_controller
    from core.settings import get_settings

    settings = get_settings()
    log.setup(level=settings.log_level, fmt=settings.log_format)
    run_controller(settings)
    return 0


def _admin_session():
    from webapp.app import ensure_default_tenant
    from core.db import migrate, session_for
    from core.settings import get_settings

    settings = get_settings()
    migrate(settings.db_url)
    ensure_default_tenant(settings.db_url)
    return session_for(settings.db_url)


def cmd_keys(args: argparse.Namespace) -> int:
    from webapp import auth

    with _admin_session() as s:
        if args.keys_command == "create":
            if s.get(auth.Tenant, args.tenant) is None:
                auth.ensure_tenant(s, name=args.tenant, submissions_per_minute=60, max_waiting=500)
            key, token = auth.create_key(s, tenant=args.tenant, admin=args.admin, name=args.name)
            print(f"created key {key.key_id} for tenant {key.tenant}{' (admin)' if key.admin else ''}; "
                  "it is shown once:", file=sys.stderr)
            print(token)
        elif args.keys_command == "revoke":
            key = auth.revoke_key(s, key_id=args.key_id)
            print(f"revoked {key.key_id} (tenant {key.tenant})", file=sys.stderr)
        else:
            for key in auth.list_keys(s):
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.key_id}  {key.tenant:<20} {'admin' if key.admin else 'user':<6} {state:<8} {key.name}")
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    from webapp import auth

    with _admin_session() as s:
        if args.tenants_command == "set":
            t = auth.ensure_tenant(s, name=args.name, submissions_per_minute=args.rate, max_waiting=args.max_waiting,
                                   retention_days=args.retention_days)
            s.commit()
            print(f"{t.name}: {t.submissions_per_minute or 'unlimited'} submissions/min, "
                  f"{t.max_waiting or 'unlimited'} waiting, retention {t.retention_days or 'default'} days")
        else:
            from sqlmodel import select

            for t in s.exec(select(auth.Tenant).order_by(auth.Tenant.name)):
                print(f"{t.name:<20} rate={t.submissions_per_minute or '-'}/min waiting={t.max_waiting or '-'} "
                      f"retention={t.retention_days or 'default'}")
    return 0


def cmd_label_node(args: argparse.Namespace) -> int:
    from controller.kube.nodes import label_node

    if not args.node:
        print("t2v model label-node: no node name: pass --node or set NODE_NAME", file=sys.stderr)
        return 2
    label_node(args.node, args.label)
    print(f"labelled node {args.node} {args.label}=true", file=sys.stderr)
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from jobimage import model_sync

    return model_sync.run(args)


def cmd_model_publish(args: argparse.Namespace) -> int:
    from jobimage import model_sync

    return model_sync.run_publish(args)


# The short names the CLI has always had; every other request field is `--its-name`.
OPTION_NAMES = {"num_frames": "frames", "num_inference_steps": "steps", "guidance_scale": "guidance"}


def _video_options(parser: argparse.ArgumentParser) -> None:
    """One option per request field (core/params.py), typed and described as VideoParams declares it."""
    for field in TEXT_FIELDS:
        if field == "prompt":
            continue
        info = VideoParams.model_fields.get(field)
        kind = info.annotation if info is not None and info.annotation in (int, float) else None
        parser.add_argument("--" + OPTION_NAMES.get(field, field).replace("_", "-"), dest=field, type=kind,
                            help=info.description if info is not None else None)


def _video_body(args: argparse.Namespace) -> dict:
    body = {"prompt": args.prompt}
    body.update({f: getattr(args, f) for f in TEXT_FIELDS if f != "prompt" and getattr(args, f) is not None})
    return body


def _video_state(video: dict) -> str:
    if video["status"] == "queued" and video.get("queue_position"):
        return f"queued, position {video['queue_position']}"
    return video["status"].replace("_", " ")


def _follow(client: Client, video_id: str, args: argparse.Namespace) -> int:
    video = None
    progress = None if args.json else Reporter(video_id)
    try:
        for video in client.wait(video_id, poll=args.poll):
            if progress:
                progress.update(int(video["progress"]), 100, _video_state(video))
    finally:
        if progress:
            progress.close()
    if video:
        _print(video, args)
    return 0 if video and video["status"] == "completed" else 1


def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    video = client.submit(_video_body(args), idempotency_key=args.idempotency_key)
    if not args.wait:
        _print(video, args)
        return 0
    return _follow(client, video["id"], args)


def cmd_status(args: argparse.Namespace) -> int:
    _print(_client(args).get(args.id), args)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    page = _client(args).list(status=args.status, batch_id=args.batch, limit=args.limit, after=args.after)
    if args.json:
        print(json.dumps(page, indent=2))
    else:
        for video in page["data"]:
            _print(video, args)
        if page["has_more"]:
            print(f"... more: t2v ls --after {page['last_id']}", file=sys.stderr)
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    return _follow(_client(args), args.id, args)


def cmd_download(args: argparse.Namespace) -> int:
    suffix = ".mp4" if args.variant == "video" else ".jpg"
    dest = Path(args.output or f"{args.id}{suffix}")
    n = _client(args).download(args.id, dest, args.variant)
    print(f"wrote {dest} ({n} bytes)", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _print(_client(args).cancel(args.id), args)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    client = _client(args)
    batch = client.batch_csv(Path(args.csv))
    print(f"{batch['id']}: {batch['counts']['total']} videos queued", file=sys.stderr)
    if not args.wait:
        if args.json:
            print(json.dumps(batch, indent=2))
        return 0
    progress = Reporter(batch["id"])
    try:
        while True:
            c = batch["counts"]
            progress.update(c["completed"] + c["failed"] + c["cancelled"], c["total"],
                            f"completed {c['completed']}, failed {c['failed']}, running {c['in_progress']}, "
                            f"queued {c['queued']}")
            if batch["status"] in ("completed", "cancelled"):
                break
            time.sleep(args.poll)
            batch = client.batch(batch["id"])
    finally:
        progress.close()
    if args.json:
        print(json.dumps(batch, indent=2))
    return 0 if batch["counts"]["failed"] == 0 and batch["status"] == "completed" else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2v", description="Batch-first text-to-video on Kubernetes + Kueue.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the API and page (and the local runner in embedded mode)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--with-controller", action="store_true",
                   help="with T2V_BACKEND=kubernetes: also run dispatcher and watcher in this process")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("controller", help="run dispatcher and watcher (cluster mode)")
    s.set_defaults(fn=cmd_controller)

    s = sub.add_parser("keys", help="API keys (talks to the database directly; run where T2V_DATABASE_URL points)")
    ksub = s.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="create a key; the token is printed once")
    k.add_argument("--tenant", required=True)
    k.add_argument("--admin", action="store_true", help="sees and manages every tenant's videos")
    k.add_argument("--name", default="", help="a note to recognise the key by")
    k = ksub.add_parser("revoke", help="revoke a key at once")
    k.add_argument("key_id")
    ksub.add_parser("list", help="list keys (never their secrets)")
    s.set_defaults(fn=cmd_keys)

    s = sub.add_parser("tenants", help="tenant limits and retention (database directly)")
    tsub = s.add_subparsers(dest="tenants_command", required=True)
    t = tsub.add_parser("set", help="create or change a tenant")
    t.add_argument("name")
    t.add_argument("--rate", type=int, help="submissions per minute (0 = unlimited)")
    t.add_argument("--max-waiting", type=int, help="videos queued or running at once (0 = unlimited)")
    t.add_argument("--retention-days", type=float, help="days finished videos are kept")
    tsub.add_parser("list", help="list tenants")
    s.set_defaults(fn=cmd_tenants)

    s = sub.add_parser("model", help="manage the local model folder")
    msub = s.add_subparsers(dest="model_command", required=True)
    sync = msub.add_parser("sync", help="download or copy a model into the model folder, verified, READY last")
    publish = msub.add_parser("publish", help="put a synced model's tokenizer.json in object storage, so web apps "
                                             "without the weights count prompt tokens (model-cache DaemonSet)")
    try:
        from jobimage import model_sync

        model_sync.add_arguments(sync)
        model_sync.add_publish_arguments(publish)
    except ImportError as e:  # torch-less installs have no jobimage extras
        sync.add_argument("--_missing", default=str(e), help=argparse.SUPPRESS)
    sync.set_defaults(fn=cmd_model)
    publish.set_defaults(fn=cmd_model_publish)
    ready = msub.add_parser("label-node", help="label this node as holding a READY model cache (model-cache DaemonSet)")
    ready.add_argument("--node", default=os.environ.get("NODE_NAME"), help="node name (env NODE_NAME)")
    ready.add_argument("--label", default="t2v.io/model-cache-ready", help="label set to 'true'")
    ready.set_defaults(fn=cmd_label_node)

    def client_parser(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--url", default=os.environ.get("T2V_URL", "http://127.0.0.1:8000"),
                       help="server URL (env T2V_URL)")
        c.add_argument("--api-key", default=os.environ.get("T2V_API_KEY"), help="API key (env T2V_API_KEY)")
        c.add_argument("--json", action="store_true", help="print JSON")
        c.add_argument("--poll", type=float, default=1.0, help="seconds between status checks")
        return c

    c = client_parser("submit", "queue one video")
    c.add_argument("prompt")
    _video_options(c)
    c.add_argument("--idempotency-key")
    c.add_argument("--wait", action="store_true", help="follow it until it ends")
    c.set_defaults(fn=cmd_submit)

    c = client_parser("status", "show one video")
    c.add_argument("id")
    c.set_defaults(fn=cmd_status)

    c = client_parser("ls", "list videos")
    c.add_argument("--status", choices=["queued", "in_progress", "completed", "failed", "cancelled"])
    c.add_argument("--batch")
    c.add_argument("--limit", type=int, default=20)
    c.add_argument("--after")
    c.set_defaults(fn=cmd_ls)

    c = client_parser("wait", "follow a video until it ends (exit 0 if completed)")
    c.add_argument("id")
    c.set_defaults(fn=cmd_wait)

    c = client_parser("download", "save a finished video")
    c.add_argument("id")
    c.add_argument("-o", "--output")
    c.add_argument("--variant", choices=["video", "thumbnail"], default="video")
    c.set_defaults(fn=cmd_download)

    c = client_parser("cancel", "cancel a video")
    c.add_argument("id")
    c.set_defaults(fn=cmd_cancel)

    c = client_parser("batch", "queue every row of a CSV (header row; 'prompt' required)")
    c.add_argument("csv")
    c.add_argument("--wait", action="store_true", help="show a progress bar until the batch ends")
    c.set_defaults(fn=cmd_batch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ClientError as e:
        print(f"t2v: {e}", file=sys.stderr)
        return 2
    except APIError as e:
        print(f"t2v: {e.message}", file=sys.stderr)
        return 2
    except ValidationError as e:
        for err in e.errors():
            name = "T2V_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"t2v: bad setting {name}={err.get('input')!r}: {err['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
