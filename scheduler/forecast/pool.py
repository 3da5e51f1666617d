"""From a demand forecast to a warm-pool size: concurrency, queueing, look-ahead, cost.

The paper keeps ``ceil(upper bound of the per-minute count)`` containers warm. That confuses
*how many requests arrive* with *how many run at once*: 60 requests of 50 ms in a minute need
one replica, not 60, while one request per minute still needs one replica *when it comes*.
What decides whether a request cold-starts is whether it finds a free warm replica, so:

* **Offered load.** A forecast of ``n`` arrivals in a step of ``step_s`` seconds is a rate
  ``lam = n / step_s``; with mean service time ``S`` the offered load (mean concurrency) is
  ``a = lam * S`` (Little's law).
* **Queueing.** With ``c`` warm replicas, each serving ``max_inflight`` requests at once, the
  probability that an arrival finds them all busy is Erlang's loss formula ``B(c * m, a)``
  (M/G/c/c is insensitive to the service-time distribution; by PASTA it is the share of
  *arrivals* that find no free slot). :func:`replicas_for_load` picks the smallest ``c`` with
  ``B <= 1 - q``: a function whose forecast upper bound says "some arrival" always gets at least
  one replica, and a busy one gets enough to absorb its Poisson fluctuations.
* **Cost.** :func:`replicas_for_cost` (what ``aquatope-prewarm`` uses) picks the replica count
  that minimises expected idle replica-seconds plus priced request delay (cold starts when no
  replica is warm, Erlang-C queueing otherwise) over rate scenarios weighted by probability,
  including rare ones (a quiet function's chance of a burst), with the price from the level
  (:func:`delay_price_for_level`).
* **Level.** ``q`` is a newsvendor critical fractile (:func:`choose_level`): the QoS percentile
  ``p`` of the workflows a function serves says how rare a cold start must be; a weight ``w`` on
  idle replica-seconds shades it, ``q = p / (p + w (1 - p))`` (``w = 1`` gives ``q = p``).
* **Look-ahead.** A replica started now is ready after the function's cold-start time, so the
  pool for "now" must cover every forecast step up to ``now + cold_start_s``
  (:func:`lookahead_steps`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_IDLE_WEIGHT",
    "DEFAULT_QOS_PERCENTILE",
    "busy_wait_miss",
    "choose_level",
    "delay_price_for_level",
    "erlang_b",
    "erlang_c",
    "imminent_need",
    "lookahead_steps",
    "pool_cost",
    "replica_need",
    "replica_need_and_load",
    "replicas_for_cost",
    "replicas_for_load",
    "replicas_worth_keeping",
]

DEFAULT_QOS_PERCENTILE = 95.0
DEFAULT_IDLE_WEIGHT = 1.0
_MAX_SLOTS = 10_000


def erlang_b(servers: int, load: float) -> float:
    """Erlang B: probability an arrival finds all ``servers`` busy under offered ``load``.

    Args:
        servers: number of parallel slots (>= 0).
        load: offered load in Erlangs (mean concurrency, >= 0).

    Returns:
        Blocking probability in [0, 1]; 1 for zero servers.
    """
    if servers < 0 or load < 0:
        raise ValueError(f"servers and load must be >= 0, got {servers}, {load}")
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def replicas_for_load(
    load: float, level: float, *, max_inflight: int = 1, max_replicas: int | None = None
) -> int:
    """Fewest replicas so that at most ``1 - level`` of arrivals find no free slot.

    Args:
        load: offered load (mean concurrent requests, ``rate * service_s``); 0 -> 0 replicas.
        level: target share of arrivals that find a warm slot, in (0, 1).
        max_inflight: concurrent requests one replica accepts.
        max_replicas: optional cap.

    Returns:
        A replica count >= 0.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
    if not load > 0.0 or not math.isfinite(load):
        return 0
    target = 1.0 - level
    b, slots = 1.0, 0
    while b > target and slots < _MAX_SLOTS:
        slots += 1
        b = load * b / (slots + load * b)
    replicas = max(1, math.ceil(slots / max_inflight))
    return min(replicas, max_replicas) if max_replicas is not None else replicas


def erlang_c(servers: int, load: float) -> float:
    """Erlang C: probability an arrival must wait (all ``servers`` busy, queueing allowed).

    Returns 1 when ``servers <= load`` (the queue grows without bound).
    """
    if servers <= 0 or servers <= load:
        return 1.0
    b = erlang_b(servers, load)
    return servers * b / (servers - load * (1.0 - b))


def pool_cost(
    replicas: int,
    rates_per_s: Sequence[float],
    probs: Sequence[float],
    service_s: float,
    *,
    exposure_s: float,
    cold_start_s: float,
    delay_price: float,
    queue_weight: float = 1.0,
    max_inflight: int = 1,
) -> float:
    """Expected idle replica-seconds plus priced delay of ``replicas`` warm replicas.

    See :func:`replicas_for_cost` for the model. With no replica, the first arrival of the
    window (probability ``1 - exp(-rate * exposure_s)``) waits a whole cold start and the
    ``rate * cold_start_s`` arrivals during that start wait the rest of it, half a cold start
    on average: ``cold_start_s * (1 + rate * cold_start_s / 2)`` request-seconds, and no
    queueing term on top (that start is the queue).

    Args:
        replicas: warm replicas ``c`` (>= 0).
        rates_per_s: rate scenarios (requests per second).
        probs: their probabilities (summing to 1).
        service_s: mean service time (seconds).
        exposure_s: time until the decision can be corrected (seconds).
        cold_start_s: replica start time (seconds).
        delay_price: idle replica-seconds one request-second of waiting is worth.
        queue_weight: weight of queueing delay relative to cold-start delay.
        max_inflight: concurrent requests one replica accepts.

    Returns:
        The expected cost in idle replica-seconds.
    """
    service = max(service_s, 1e-6)
    total = 0.0
    for p, r in zip(probs, rates_per_s, strict=True):
        a = r * service
        if r <= 0:
            total += p * exposure_s * replicas
        elif replicas == 0:
            arrives = 1.0 - math.exp(-r * exposure_s)
            cold_wait = arrives * cold_start_s * (1.0 + r * cold_start_s / 2.0)
            total += p * delay_price * cold_wait
        else:
            n = replicas * max_inflight
            idle = max(replicas - a * (1.0 - erlang_b(n, a)) / max_inflight, 0.0)
            queue_s = service / (n - a) if n > a else cold_start_s
            wait = queue_weight * r * exposure_s * erlang_c(n, a) * min(queue_s, cold_start_s)
            total += p * (exposure_s * idle + delay_price * wait)
    return total


def replicas_for_cost(
    rates_per_s: Sequence[float],
    weights: Sequence[float],
    service_s: float,
    *,
    exposure_s: float,
    cold_start_s: float,
    delay_price: float,
    queue_weight: float = 1.0,
    max_inflight: int = 1,
    max_replicas: int | None = None,
    current: int = 0,
    start_cost: float = 0.0,
) -> int:
    """Replicas now minimising idle replica-seconds plus priced request delay.

    A decision holds until it can be corrected: a replica dropped now is back only after the
    next tick plus a cold start, ``exposure_s``. Over that window, for ``c`` replicas
    (``n = c * max_inflight`` slots) and each rate scenario ``i`` (probability ``weights[i]``,
    offered load ``a_i = rate_i * service_s``):

    * idle replica-seconds ``= exposure_s * (c - a_i (1 - B(n, a_i)) / max_inflight)``;
    * delay (request-seconds): with no replica, if an arrival comes (probability
      ``1 - exp(-rate_i * exposure_s)``) it scales the function from zero and it and the
      ``rate_i * cold_start_s`` arrivals behind it wait a cold start; with replicas, a share
      ``C(n, a_i)`` (Erlang C) of the window's arrivals queues for ``service_s / (n - a_i)``
      on average (M/M/n), capped at a cold start;

    and ``c`` minimises ``idle + delay_price * delay + start_cost * max(c - current, 0)`` in
    expectation over the scenarios. It is a Lagrangian of the trade-off: sweeping
    ``delay_price`` traces the frontier. The start term charges each replica started now (CPU
    spent starting it, taken from the replicas already serving on a small machine), so a
    noisy upper scenario does not start replicas whose expected saving is below their cost.

    Args:
        rates_per_s: rate scenarios (requests per second), >= 0.
        weights: their probabilities (normalised here).
        service_s: mean service time (seconds).
        exposure_s: time until a decision can be corrected: next tick plus a cold start (s).
        cold_start_s: time a replica takes to start (seconds).
        delay_price: idle replica-seconds one request-second of waiting is worth.
        queue_weight: weight of queueing delay relative to cold-start delay (1: a second is a
            second; 0: only cold starts count, the paper's metric).
        max_inflight: concurrent requests one replica accepts.
        max_replicas: optional cap.
        current: replicas running or starting now (only those above it pay ``start_cost``).
        start_cost: idle replica-seconds one replica start is worth (0 = starts are free).

    Returns:
        A replica count >= 0.
    """
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
    if start_cost < 0:
        raise ValueError(f"start_cost must be >= 0, got {start_cost}")
    merged: dict[float, float] = {}  # equal scenarios cost the same: merge their weights
    for r, w in zip(rates_per_s, weights, strict=True):
        rate = max(float(r), 0.0)
        merged[rate] = merged.get(rate, 0.0) + float(w)
    rates = list(merged)
    total_w = float(sum(merged.values()))
    probs = [w / total_w for w in merged.values()]
    if not any(r > 0 for r in rates):
        return 0
    service = max(service_s, 1e-6)
    loads = [r * service for r in rates]
    cap = max_replicas if max_replicas is not None else _MAX_SLOTS // max_inflight

    def cost(c: int) -> float:
        return start_cost * max(c - current, 0) + pool_cost(
            c,
            rates,
            probs,
            service,
            exposure_s=exposure_s,
            cold_start_s=cold_start_s,
            delay_price=delay_price,
            queue_weight=queue_weight,
            max_inflight=max_inflight,
        )

    best_c, best = 0, cost(0)
    c = 0
    while c < cap:
        c += 1
        value = cost(c)
        if value < best - 1e-12:
            best_c, best = c, value
        elif c > best_c + 2 and c > max(loads) / max_inflight + 3:
            break  # past the optimum: idle only grows from here
    return best_c


def delay_price_for_level(level: float) -> float:
    """Idle replica-seconds that one request-second of waiting is worth, for level ``q``.

    Newsvendor reading: ``q = c_wait / (c_wait + c_idle)``, so ``c_wait / c_idle = q / (1 - q)``
    (a p95 QoS prices a second of waiting like 19 replica-seconds idle).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return level / (1.0 - level)


def choose_level(
    qos_percentiles: Iterable[float] = (),
    *,
    idle_weight: float = DEFAULT_IDLE_WEIGHT,
    default_percentile: float = DEFAULT_QOS_PERCENTILE,
    floor: float = 0.0,
    ceiling: float = 1.0,
) -> float:
    """Quantile level for one function from its workflows' QoS and the idle-replica weight.

    Newsvendor critical fractile ``q = c_cold / (c_cold + c_idle)`` with the cost ratio set so
    that ``idle_weight = 1`` gives the strictest QoS percentile ``p`` of the workflows the
    function serves: ``q = p / (p + w (1 - p))``. ``w > 1`` (idle replicas dearer) lowers ``q``,
    ``w < 1`` raises it.

    Args:
        qos_percentiles: QoS percentiles (0-100) of the workflows calling the function.
        idle_weight: relative cost of idle replica-seconds (> 0).
        default_percentile: used when the function serves no known workflow.
        floor / ceiling: optional clamp of the result (none by default: the whole range
            of the weight reaches the level).

    Returns:
        A level in [floor, ceiling], strictly inside (0, 1).
    """
    if not idle_weight > 0:
        raise ValueError(f"idle_weight must be positive, got {idle_weight}")
    pcts = [p for p in qos_percentiles]
    p = (max(pcts) if pcts else default_percentile) / 100.0
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    q = p / (p + idle_weight * (1.0 - p))
    return min(max(q, floor, 1e-12), ceiling, 1.0 - 1e-12)


def lookahead_steps(cold_start_s: float, tick_s: float, step_s: float) -> int:
    """Forecast steps the pool must cover: up to ``now + cold_start_s + tick_s``.

    Args:
        cold_start_s: time from a scale-up to a ready replica (seconds).
        tick_s: decision interval (seconds): the next chance to correct.
        step_s: forecast step length (seconds).

    Returns:
        At least 1.
    """
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    return max(1, math.ceil((max(cold_start_s, 0.0) + max(tick_s, 0.0)) / step_s))


def replica_need(
    rates_per_s: Sequence[float],
    weights: Sequence[float],
    service_s: float,
    *,
    horizon_s: float,
    max_inflight: int = 1,
    max_replicas: int = 1000,
    floor: float = 1e-9,
) -> list[float]:
    """``P(replica k is needed within horizon_s)`` for ``k = 1, 2, ...`` (non-increasing):
    the first half of :func:`replica_need_and_load`, whose docstring gives the model."""
    need, _ = replica_need_and_load(
        rates_per_s,
        weights,
        service_s,
        horizon_s=horizon_s,
        max_inflight=max_inflight,
        max_replicas=max_replicas,
        floor=floor,
    )
    return need


def replica_need_and_load(
    rates_per_s: Sequence[float],
    weights: Sequence[float],
    service_s: float,
    *,
    horizon_s: float,
    max_inflight: int = 1,
    max_replicas: int = 1000,
    floor: float = 1e-9,
) -> tuple[list[float], list[float]]:
    """``P(replica k is needed within horizon_s)`` for ``k = 1, 2, ...`` (non-increasing), and
    the offered load where it is.

    Replica ``k`` is needed when the concurrency reaches ``j = (k - 1) * max_inflight + 1``.
    Under each rate scenario ``r`` (probability ``weights[i]``) the concurrency is the
    M/G/inf occupancy, Poisson with mean ``a = r * service_s``; it is at least ``j`` now with
    probability ``T(j) = P(N >= j)`` and, if not, an arrival lifts it from ``j - 1`` to ``j``
    at rate ``r * pi(j - 1)`` (the level's up-crossing rate), so within the horizon::

        P_k(r) = 1 - (1 - T(j)) * exp(-r * horizon_s * pi(j - 1))

    (for ``k = 1``: busy now, or an arrival within the horizon). The result mixes the
    scenarios and stops at the first ``k`` below ``floor``.

    Args:
        rates_per_s: rate scenarios (requests per second), >= 0.
        weights: their probabilities (normalised here).
        service_s: mean service time (seconds).
        horizon_s: look-ahead (seconds): a cold start plus one tick.
        max_inflight: concurrent requests one replica accepts (>= 1).
        max_replicas: longest list returned.
        floor: probabilities below it end the list.

    Returns:
        ``([P_1, P_2, ...], [a_1, a_2, ...])``: each ``P_k`` in [0, 1], and ``a_k`` the
        offered load (Erlangs, ``r x service_s``) expected in the scenarios where replica
        ``k`` is needed, ``sum_i w_i P_k(r_i) a_i / sum_i w_i P_k(r_i)``: a wait for a later
        replica happens in the busy scenarios, not at the mean rate.
    """
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
    merged: dict[float, float] = {}
    for r, w in zip(rates_per_s, weights, strict=True):
        if w > 0:
            rate = max(float(r), 0.0)
            merged[rate] = merged.get(rate, 0.0) + float(w)
    total_w = sum(merged.values())
    if total_w <= 0:
        return [], []
    service = max(service_s, 1e-6)
    out: list[float] = []
    loaded: list[float] = []  # sum_i w_i P_k(r_i) a_i
    for rate, w in merged.items():
        if rate <= 0:
            continue
        one = _need_one(rate, service, float(horizon_s), max_inflight, max_replicas, floor)
        share = w / total_w
        for k, p in enumerate(one):
            if k < len(out):
                out[k] += share * p
                loaded[k] += share * p * rate * service
            else:
                out.append(share * p)
                loaded.append(share * p * rate * service)
    while out and out[-1] < floor:
        out.pop()
        loaded.pop()
    loads = [x / p if p > 0 else 0.0 for x, p in zip(loaded, out, strict=True)]
    return [min(p, 1.0) for p in out], loads


@functools.lru_cache(maxsize=65536)
def _need_one(
    rate: float, service_s: float, horizon_s: float, per: int, max_replicas: int, floor: float
) -> tuple[float, ...]:
    """:func:`replica_need` for one rate scenario (memoised: rates recur across ticks)."""
    a = rate * service_s
    pmf = math.exp(-a)  # pmf(j - 1), starting at j = 1
    tail = 1.0 - pmf  # T(j)
    level = 1
    out: list[float] = []
    for _k in range(max_replicas):
        prob = 1.0 - (1.0 - tail) * math.exp(-rate * horizon_s * pmf)
        if prob < floor:
            break
        out.append(prob)
        for _ in range(per):
            pmf = pmf * a / level
            tail = tail - pmf if tail > pmf else 0.0
            level += 1
    return tuple(out)


def imminent_need(
    sources: Iterable[tuple[int, float]], *, max_inflight: int = 1, max_replicas: int = 1000
) -> list[float]:
    """``P(replica k needed)`` from calls running upstream that will call this function.

    Each source is ``(n, c)``: ``n`` upstream calls in flight, each expected to bring ``c``
    concurrent calls here (edge weight x learned fan-out gain x overlap of the service
    times). A call's contribution is ``floor(c)`` sure calls and one more with probability
    ``c - floor(c)``: a fan-out of three is three calls, a branch taken by one call in five
    is one call with probability 0.2, not a sure one. The concurrency is the sum over the
    running calls (a Poisson-binomial count), and replica ``k`` is needed when it reaches
    ``(k - 1) * max_inflight + 1``.

    Args:
        sources: ``(running calls, expected concurrency each)`` per upstream.
        max_inflight: concurrent requests one replica accepts (>= 1).
        max_replicas: longest list returned.

    Returns:
        ``[P_1, P_2, ...]``, non-increasing, ending before the first zero.

    Example:
        >>> [round(p, 3) for p in imminent_need([(2, 0.5)])]  # two calls, each a coin flip
        [0.75, 0.25]
    """
    if max_inflight < 1:
        raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
    sure = 0
    pmf = [1.0]  # distribution of the uncertain calls: pmf[i] = P(i of them happen)
    top = (max_replicas - 1) * max_inflight + 1  # more calls than this change no answer
    for n, each in sources:
        if n <= 0 or not each > 0:
            continue
        whole = math.floor(each)
        frac = each - whole
        sure += n * whole
        if frac <= 1e-12:
            continue
        for _ in range(n):  # one Bernoulli(frac) per running call
            grown = [0.0] * (len(pmf) + 1)
            for i, p in enumerate(pmf):
                grown[i] += p * (1.0 - frac)
                grown[i + 1] += p * frac
            if len(grown) > top + 1:  # "top or more" is one bucket
                grown[top] += sum(grown[top + 1 :])
                del grown[top + 1 :]
            pmf = grown
    at_least = [0.0] * (len(pmf) + 1)  # at_least[i] = P(uncertain calls >= i)
    for i in range(len(pmf) - 1, -1, -1):
        at_least[i] = at_least[i + 1] + pmf[i]
    out: list[float] = []
    for k in range(1, max_replicas + 1):
        missing = (k - 1) * max_inflight + 1 - sure  # uncertain calls replica k waits for
        p = 1.0 if missing <= 0 else (at_least[missing] if missing < len(at_least) else 0.0)
        if p <= 0.0:
            break
        out.append(min(p, 1.0))
    return out


def replicas_worth_keeping(
    need: Sequence[float],
    *,
    blocked_cost: float,
    idle_cost: float,
    current: int = 0,
    start_cost: float = 0.0,
    busy_cost: float | Sequence[float] | None = None,
    contention_cost: float = 0.0,
) -> int:
    """Replicas whose expected saving exceeds their idle cost (the per-replica rule).

    Replica ``k`` is kept (or started) while ``need[k-1] * cost_k > idle_cost`` (plus
    ``start_cost`` for a replica that is not running or starting yet: ``k > current``), where
    ``cost_1 = blocked_cost`` (without replica 1 an arrival waits for a cold start) and
    ``cost_k`` for ``k >= 2`` is the busy cost (without replica ``k`` it waits for one of the
    ``k - 1`` busy ones to free up). As ``need`` does not increase with ``k`` and ``cost_k``
    does not either, the answer is the first ``k`` that fails, minus one.

    Args:
        need: ``P(replica k needed within the horizon)``, from :func:`replica_need`.
        blocked_cost: cost of an arrival that finds no warm replica (idle replica-seconds).
        idle_cost: cost of one replica kept idle over the horizon (idle replica-seconds).
        current: replicas running or starting now.
        start_cost: extra cost of starting a replica (idle replica-seconds).
        busy_cost: cost of an arrival that finds every warm replica busy: one figure for
            every ``k >= 2``, or one per replica from the second on (``busy_cost[k-2]``,
            non-increasing; the last one repeats); each is capped at ``blocked_cost``.
            None: ``blocked_cost``.
        contention_cost: what a start costs the calls it shares a saturated host with
            (idle replica-seconds; see ``AquatopePrewarmPolicy``), charged with
            ``start_cost``. The first replica's start is paid anyway when its call comes (the
            platform starts one for it), so only ``(1 - need[0])`` of it counts there; a later
            replica that is not started costs no start at all.

    Returns:
        A replica count >= 0.
    """
    if busy_cost is None:
        later: Sequence[float] = (blocked_cost,)
    elif isinstance(busy_cost, (int, float)):
        later = (min(float(busy_cost), blocked_cost),)
    else:
        later = [min(float(c), blocked_cost) for c in busy_cost] or [blocked_cost]
    keep = 0
    for k, p in enumerate(need, start=1):
        threshold = idle_cost
        if k > current:
            threshold += start_cost + (contention_cost * (1.0 - p) if k == 1 else contention_cost)
        cost = blocked_cost if k == 1 else later[min(k - 2, len(later) - 1)]
        if p * cost > threshold:
            keep = k
        else:
            break
    return keep


def busy_wait_miss(
    slack_s: float, service_s: float, *, replicas: int, load: float, per_replica: int = 1
) -> float:
    """``P(an arrival that finds all replicas busy waits past the slack)``.

    The wait of a call queued at ``c = replicas x per_replica`` busy servers with offered
    load ``a`` (calls per second x service time) is, in the M/M/c queue, exponential with
    mean ``service / (c - a)`` (Erlang C, given that it waits); the call misses its QoS target
    when the wait exceeds ``slack_s``, the target minus the workflow's latency without it.

    Args:
        slack_s: QoS target minus the critical path of the workflow's service times (<= 0:
            any wait misses).
        service_s: mean service time of one call here (seconds).
        replicas: the busy replicas the call waits for (>= 1).
        load: offered load ``a`` (Erlangs); ``a >= c`` is an unstable queue (the wait grows
            without bound: a sure miss).
        per_replica: calls one replica serves at once.

    Example:
        >>> round(busy_wait_miss(0.08, 0.05, replicas=1, load=0.0), 3)  # exp(-1.6)
        0.202
        >>> busy_wait_miss(0.08, 0.05, replicas=1, load=1.2)
        1.0
    """
    servers = max(replicas, 1) * max(per_replica, 1)
    if slack_s <= 0 or load >= servers:
        return 1.0
    mean_wait = max(service_s, 1e-9) / (servers - max(load, 0.0))
    return math.exp(-slack_s / mean_wait)
