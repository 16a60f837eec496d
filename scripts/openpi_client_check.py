"""Drives `mulli serve` with Physical Intelligence's own client (openpi-client from PyPI).

Usage: python openpi_client_check.py HOST PORT API_KEY
Checks: metadata frame, actions of shape [H, A] as float32 for HWC uint8 images at the
server's size and at 4x (resized by the server), CHW float images in [0, 1], the error frame
for a missing key (raised by the client as RuntimeError), refusal without the API key,
GET /healthz and GET /metrics.
"""

import sys
import time
import urllib.request

import numpy as np
from openpi_client import websocket_client_policy


def obs_for(meta, scale=1, chw_float=False, rng=np.random.default_rng(0)):
    obs = {}
    for cam in meta["cameras"]:
        h, w = cam["height"] * scale, cam["width"] * scale
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if chw_float:
            img = np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32) / 255.0
        obs[cam["key"]] = img
    obs[meta["state_key"]] = rng.standard_normal(meta["state_dim"]).astype(np.float32)
    obs[meta["prompt_key"]] = "put the ketchup in the fridge"
    return obs


def main():
    host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    base = f"http://{host}:{port}"
    print("GET /healthz:", urllib.request.urlopen(base + "/healthz").read().decode().strip())

    try:
        websocket_client_policy.WebsocketClientPolicy(host=host, port=port)
        raise SystemExit("FAIL: connected without the API key")
    except Exception as e:  # websockets raises InvalidStatus for HTTP 401
        print("without API key: refused:", type(e).__name__, str(e).splitlines()[0][:80])

    client = websocket_client_policy.WebsocketClientPolicy(host=host, port=port, api_key=key)
    meta = client.get_server_metadata()
    print("metadata:", {k: v for k, v in meta.items() if k not in ("image_format",)})
    H, A = meta["action_horizon"], meta["action_dim"]

    for label, obs in [
        ("uint8 HWC at the policy's size", obs_for(meta)),
        ("uint8 HWC at 4x (server resizes)", obs_for(meta, scale=4)),
        ("float32 CHW in [0, 1]", obs_for(meta, chw_float=True)),
    ]:
        t0 = time.perf_counter()
        out = client.infer(obs)
        ms = (time.perf_counter() - t0) * 1e3
        a = out["actions"]
        assert isinstance(a, np.ndarray), type(a)
        assert a.shape == (H, A), (a.shape, (H, A))
        assert a.dtype == np.float32, a.dtype
        assert np.isfinite(a).all()
        print(f"{label}: actions {a.shape} {a.dtype}, first {np.round(a[0], 3).tolist()}, "
              f"server_timing {sorted(out['server_timing'])}, policy_timing {sorted(out['policy_timing'])}, "
              f"round trip {ms:.1f} ms")

    # Same observation twice → same actions (the served policy is deterministic).
    obs = obs_for(meta)
    a1, a2 = client.infer(obs)["actions"], client.infer(obs)["actions"]
    assert np.array_equal(a1, a2)
    print("repeatable: identical actions for the same observation")

    bad = obs_for(meta)
    missing = meta["cameras"][0]["key"]
    del bad[missing]
    try:
        client.infer(bad)
        raise SystemExit("FAIL: a missing key was accepted")
    except RuntimeError as e:
        msg = str(e)
        assert missing in msg, msg
        print("missing key → RuntimeError:", msg.splitlines()[-1][:160])

    metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    wanted = [l for l in metrics.splitlines()
              if l.startswith(("mulli_serve_requests_total", "mulli_serve_errors_total{kind=\"bad_request\"}",
                               "mulli_serve_errors_total{kind=\"unauthorized\"}"))]
    print("GET /metrics:", "; ".join(wanted))
    print("OK: openpi-client interop passed")


if __name__ == "__main__":
    main()
