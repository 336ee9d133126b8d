"""Models split over ggml RPC peers: probing peers, placement, fault handling, and serving.

- :mod:`.wire` parses ``host:port[|device]`` entries and probes a peer with timeouts before a load.
- :mod:`.placement` builds ik's ``devices`` / ``rpc_servers`` / ``tensor_split`` and refuses what ik
  would abort on.
- :mod:`.guard` holds the process-wide lock, the one-context-per-peer rule and ggml-rpc's failure
  latch and traffic counters (patch 0013).
- :mod:`.usage` reports where the weights and KV went (``Model.devices()``).
- :mod:`.server` runs ggml's RPC server in this process (``ikllama rpc-server``).

ggml RPC has no authentication or encryption and trusts its client with raw memory addresses: run
peers only on a trusted network.
"""

from __future__ import annotations

from .guard import Traffic, failures, last_error, traffic
from .placement import Placement, plan
from .usage import DeviceUsage
from .wire import Endpoint, PeerInfo, parse_endpoint, probe

__all__ = ["DeviceUsage", "Endpoint", "PeerInfo", "Placement", "Traffic", "failures", "last_error",
           "parse_endpoint", "plan", "probe", "traffic"]
