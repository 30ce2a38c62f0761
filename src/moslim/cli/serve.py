"""`moslim serve`: the policy and reward model behind an OpenAI-compatible API and a page."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve a policy and reward model: OpenAI-compatible API, reward endpoints, a page",
        description="Chat under a preference (POST /v1/chat/completions with a 'preferences' object), the "
        "reward model's levels (POST /v1/score), OpenRLHF's remote reward (POST /get_reward), and a page with "
        "one slider per objective at /. Binds 127.0.0.1 unless --host says otherwise.")
    parser.add_argument("--policy", help="policy folder (e.g. runs/demo/rl/final) or built-in name")
    parser.add_argument("--reward-model", help="reward model folder (e.g. runs/demo/rm)")
    parser.add_argument("--objectives", help="objectives YAML (for a base policy without a reward model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("MOSLIM_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on the API (default: $MOSLIM_API_KEY, else none)")
    parser.add_argument("--model-name", help="the model id clients send (default: the --policy argument)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    parser.add_argument("--mapping", default="zscore", choices=["zscore", "expected_level", "target_logprob"],
                        help="how levels + preference become one reward (see moslim.reward.mapping)")
    parser.add_argument("--max-tokens", type=int, default=256, help="cap on a request's max_tokens")
    parser.add_argument("--default-max-tokens", type=int, default=128, help="when a request names none")
    parser.add_argument("--max-batch", type=int, default=16, help="answers (or scored pairs) per batch; "
                        "1 turns batching off")
    parser.add_argument("--batch-window-ms", type=float, default=10.0,
                        help="how long a request waits for others to share its batch")
    parser.add_argument("--max-queue", type=int, default=64, help="waiting requests before answering 503")
    parser.add_argument("--seed", type=int, default=None, help="seed of the server's random stream "
                        "(requests with their own 'seed' are reproducible regardless)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from moslim.serve.app import ServeSettings, create_app
    from moslim.serve.engine import load_engine

    if not _is_loopback(args.host) and not args.api_key:
        log.warning("binding %s without --api-key: anyone who can reach this address can use the models",
                    args.host)
    settings = ServeSettings(api_key=args.api_key, max_tokens=args.max_tokens,
                             default_max_tokens=min(args.default_max_tokens, args.max_tokens),
                             max_batch_rows=args.max_batch, batch_window_ms=args.batch_window_ms,
                             max_queue=args.max_queue)
    engine = load_engine(args.policy, args.reward_model, args.objectives, device=args.device,
                         model_name=args.model_name, mapping=args.mapping, seed=args.seed)
    app = create_app(engine, settings)
    print(f"moslim serve: http://{args.host}:{args.port}/  (model {engine.model_name!r}, objectives "
          f"{', '.join(engine.objectives.names)}; Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
