"""Fetch one large file over HTTP(S) so that a slow, flaky server cannot defeat it.

:func:`fetch` tries each address in turn, writing to ``<dest>.part`` and renaming it to ``dest``
once complete (the caller checks the md5). For each address it

- follows redirects 301/302/303/307/308 itself, at most ``policy.max_redirects`` of them, so the
  same on every Python (``urllib`` follows 308 only from Python 3.11);
- continues a ``.part`` file left by an earlier try or run with ``Range: bytes=N-``, accepted only
  as ``206`` whose ``Content-Range`` starts at byte N; a ``200`` answer restarts from byte 0;
- retries transient failures (connection reset or closed early, timeout, HTTP 5xx/408/429) after
  ``backoff_s * 2**(k-1)`` seconds (capped at ``max_backoff_s``), at most ``attempts`` tries in a
  row without progress, logging each in one line; anything else (404, connection refused, unknown
  host, too many redirects) moves on to the next address at once.

The ``.part`` file is kept on every failure and on Ctrl-C, so the next call resumes it. When all
addresses fail, :class:`DownloadError` names each address with its last error and the bytes kept.
"""
from __future__ import annotations

import dataclasses
import http.client
import os
import pathlib
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from .. import __version__

REDIRECT_CODES = (301, 302, 303, 307, 308)
TRANSIENT_HTTP_CODES = (408, 425, 429)  # and every 5xx
USER_AGENT = f"tinyba2m/{__version__} (Python urllib)"
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed, {remaining} left, {rate_fmt}]"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard :func:`fetch` tries. ``attempts``: tries per address in a row without progress;
    wait before retry k (1, 2, ...): ``min(max_backoff_s, backoff_s * 2**(k-1))`` seconds;
    ``timeout_s``: per connect/read; ``chunk``: bytes per read (and per write to the ``.part``)."""
    attempts: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 60.0
    max_redirects: int = 10
    chunk: int = 1 << 16

    def delay(self, retry: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (max(retry, 1) - 1))


class DownloadError(RuntimeError):
    """Every address failed. ``tried``: one ``"<url>: <last error>"`` line per address;
    ``have``: bytes kept in ``part`` (resumed by the next call); ``total``: the size, if known."""

    def __init__(self, tried: list, part: pathlib.Path, have: int, total: int | None):
        self.tried, self.part, self.have, self.total = list(tried), part, have, total
        of = f" of {total:,}" if total else ""
        kept = (f"{have:,}{of} bytes obtained, kept in {part}: running again resumes from there"
                if have else "No bytes obtained")
        super().__init__("tried " + "; ".join(f"({i}) {t}" for i, t in enumerate(tried, 1)) + f". {kept}.")


class _Transient(Exception):
    """Worth retrying at the same address."""


class _Permanent(Exception):
    """Move on to the next address."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an ``HTTPError`` so that :func:`_open` follows it (with Range kept)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _size(path: pathlib.Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def fetch(urls, dest, *, size: int | None = None, policy: RetryPolicy = RetryPolicy(), progress: bool = True,
          say=_stderr, desc: str = "download") -> str:
    """Download the first address of ``urls`` that works to ``dest`` (via ``<dest>.part``); return it.

    ``size``: the expected number of bytes, if known (a ``.part`` of exactly that size is taken as
    complete without asking the server). ``say``: one-line log messages (retries, resume, fallback);
    ``progress``: a tqdm bar with rate and time left. Raises :class:`DownloadError`.
    """
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    opener = urllib.request.build_opener(_NoRedirect)
    urls, tried, total = list(urls), [], size
    try:
        for i, url in enumerate(urls):
            failures = 0
            while True:
                before = _size(part)
                try:
                    if size is not None and before == size:
                        say(f"{part} already holds all {size:,} bytes")
                    else:
                        total = _fetch_once(opener, url, part, size, policy, progress, say, desc) or total
                    os.replace(part, dest)
                    return url
                except _Permanent as exc:
                    tried.append(f"{url}: {exc}")
                    why = str(exc)
                    break
                except _Transient as exc:
                    have = _size(part)
                    failures = 0 if have > before else failures + 1
                    if failures >= policy.attempts:
                        tried.append(f"{url}: {exc} ({policy.attempts} tries in a row without progress)")
                        why = f"giving up after {policy.attempts} tries"
                        break
                    wait = policy.delay(failures)
                    say(f"{url}: {exc}; {have:,} bytes kept; retrying in {wait:g}s "
                        f"({policy.attempts - failures} tries left without progress)")
                    time.sleep(wait)
            if i + 1 < len(urls):
                say(f"{url}: {why}; trying the next address, {urls[i + 1]}")
    except KeyboardInterrupt:
        say(f"interrupted: {_size(part):,} bytes kept in {part}; run again to resume from there")
        raise
    raise DownloadError(tried, part, _size(part), total)


def _fetch_once(opener, url, part, size, policy, progress, say, desc) -> int | None:
    """One request; append to or restart ``part``. Returns the total size if the server told it."""
    have = _size(part)
    resp, chain = _open(opener, url, have, policy)
    if resp.status == 416:  # asked beyond the end: complete if the size in Content-Range agrees
        m = re.match(r"bytes\s+\*/(\d+)", (resp.headers.get("Content-Range") or "").strip())
        total = int(m.group(1)) if m else None
        if total == have:
            return have
        part.unlink()
        raise _Transient(f"the server refused to resume from byte {have:,} (HTTP 416, size {total}); "
                         f"the partial file was discarded")
    with resp:
        if len(chain) > 1:
            say(f"{url} redirects to {chain[-1]}" + (f" (via {len(chain) - 2} more)" if len(chain) > 2 else ""))
        status = resp.status or 200  # file: and ftp: answers have no status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if status == 206:
            cr = resp.headers.get("Content-Range") or ""
            m = _CONTENT_RANGE.match(cr.strip())
            if not m or int(m.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Transient(f"asked to resume from byte {have:,}, the server answered 206 with Content-Range "
                                 f"{cr!r}; the partial file was discarded, starting again from 0")
            total = int(m.group(3)) if m.group(3) != "*" else (have + length if length is not None else None)
            mode = "ab"
            if have:
                say(f"resuming: {have:,}" + (f" of {total:,}" if total else "") + f" bytes already in {part}")
        else:
            if have:
                say(f"the server does not resume downloads (HTTP {status} to a Range request): "
                    f"starting again from byte 0 ({have:,} bytes discarded)")
            have, total, mode = 0, length, "wb"
        from tqdm import tqdm
        got = have
        with open(part, mode) as out, tqdm(total=total or size, initial=have, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=desc, bar_format=BAR_FORMAT,
                                           disable=not progress) as bar:
            while True:
                try:
                    block = resp.read(policy.chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(_reason(exc)) from exc
                if not block:
                    break
                out.write(block)
                got += len(block)
                bar.update(len(block))
    if total is not None and got < total:
        raise _Transient(f"connection closed after {got:,} of {total:,} bytes")
    return total


def _open(opener, url: str, have: int, policy: RetryPolicy):
    """GET ``url`` (with ``Range`` from byte ``have`` when > 0), following redirects by hand.
    Returns ``(response, chain of addresses)``, the response being the ``HTTPError`` for a 416 to a Range
    request; raises _Transient / _Permanent."""
    chain = [url]
    for _ in range(policy.max_redirects + 1):
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            return opener.open(urllib.request.Request(url, headers=headers), timeout=policy.timeout_s), chain
        except urllib.error.HTTPError as exc:
            code, location = exc.code, exc.headers.get("Location")
            reason = f"HTTP {exc.code} {exc.reason}"
            exc.close()
            if code in REDIRECT_CODES and location:
                url = urllib.parse.urljoin(url, location.strip())
                if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                    raise _Permanent(f"redirected to an unsupported address {url}") from None
                chain.append(url)
                continue
            if code == 416 and have:
                return exc, chain
            if code >= 500 or code in TRANSIENT_HTTP_CODES:
                raise _Transient(reason) from None
            raise _Permanent(reason) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                                       http.client.HTTPException)):
                raise _Transient(_reason(exc.reason)) from exc
            raise _Permanent(_reason(exc.reason)) from exc
        except (OSError, http.client.HTTPException) as exc:  # while reading the status line and headers
            raise _Transient(_reason(exc)) from exc
        except ValueError as exc:
            raise _Permanent(f"not a usable address ({exc})") from exc
    raise _Permanent(f"more than {policy.max_redirects} redirects ({' -> '.join(chain[:4])} ...)")


def _reason(exc) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, BaseException):
        text = str(exc) or type(exc).__name__
        return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"
    return str(exc)
