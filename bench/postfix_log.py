"""A generated Postfix relay log with amavis, shaped like a real mail server's, and the message
facts mailflow should find in it.

Every message comes in on port 25 from an external client (inbound) or on submission from an
authenticated user (outbound), goes through amavis on 127.0.0.1:10024 and is re-injected on
:10025 under a new queue id; inbound mail is then delivered to dovecot over LMTP, outbound mail
to one relay per recipient domain, some after a deferred attempt. Between the messages come the
lines of a busy server that carry no mail: dovecot logins, anvil statistics, scanners that
disconnect. Names are under example.com (the organization) and example.net (the rest of the
world), addresses in the documentation ranges.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOST = "mx1"
ORGANIZATION_DOMAIN = "example.com"
START = datetime(2026, 3, 2, tzinfo=UTC)  # classic time stamps carry no year: give --year 2026
YEAR = START.year
_PARTNERS = [f"partner{number}.example.net" for number in range(300)]
_USERS = [f"user{number}" for number in range(500)]
_INBOUND_TLS = [("TLSv1.3", "TLS_AES_256_GCM_SHA384")] * 55 + \
    [("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")] * 30 + [("TLSv1", "ECDHE-RSA-AES256-SHA")] * 3 + \
    [("TLSv1.1", "ECDHE-RSA-AES128-SHA")] + [None] * 11
_OUTBOUND_TLS = [("TLSv1.3", "TLS_AES_256_GCM_SHA384")] * 40 + \
    [("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")] * 50 + [None] * 10
_DEFERRED_SHARE = 0.05
_RETRY_AFTER = timedelta(minutes=5)


@dataclass
class Generated:
    """What the generator wrote: its lines and the message facts in them, by direction."""

    lines: int = 0
    bytes: int = 0
    messages: int = 0
    inbound_facts: int = 0
    outbound_facts: int = 0

    @property
    def facts(self) -> int:
        return self.inbound_facts + self.outbound_facts


class _Log:
    """Time stamped lines in the order they are due; later lines wait in a heap."""

    def __init__(self, pick: random.Random) -> None:
        self.pick = pick
        self.now = START
        self._stamp_second = START
        self._stamp = self._format(START)
        self._pending: list[tuple[datetime, int, str, str]] = []
        self._order = 0

    def _format(self, at: datetime) -> str:
        return f"{at:%b} {at.day:2d} {at:%H:%M:%S}"

    def stamp(self, at: datetime) -> str:
        second = at.replace(microsecond=0)
        if second != self._stamp_second:
            self._stamp_second, self._stamp = second, self._format(second)
        return self._stamp

    def line(self, program: str, text: str) -> str:
        return f"{self.stamp(self.now)} {HOST} {program}: {text}\n"

    def later(self, at: datetime, program: str, text: str) -> None:
        self._order += 1
        heapq.heappush(self._pending, (at, self._order, program, text))

    def due(self) -> Iterator[str]:
        """The postponed lines whose time has come, at their own time."""
        while self._pending and self._pending[0][0] <= self.now:
            at, _, program, text = heapq.heappop(self._pending)
            yield f"{self.stamp(at)} {HOST} {program}: {text}\n"

    def rest(self) -> Iterator[str]:
        while self._pending:
            at, _, program, text = heapq.heappop(self._pending)
            yield f"{self.stamp(at)} {HOST} {program}: {text}\n"


class PostfixLog:
    """Lines of a generated log, deterministic for a seed; ``generated`` counts what they hold.

    Messages arrive at random, ``messages_per_second`` on average: two a second make about a
    day of log per 400 MB.
    """

    def __init__(self, seed: int, messages_per_second: float = 2.0) -> None:
        self.seed = seed
        self._rate = messages_per_second
        self.generated = Generated()
        self._pick = random.Random(seed)
        self._log = _Log(self._pick)
        self._queue_ids = 0x1A2B30000
        self._pid = 1000

    def lines(self, target_bytes: int) -> Iterator[str]:
        """Lines until about ``target_bytes`` are written, then those still due."""
        generated = self.generated
        for line in self._all_lines(target_bytes):
            generated.lines += 1
            generated.bytes += len(line)
            yield line

    def _all_lines(self, target_bytes: int) -> Iterator[str]:
        pick, log, generated = self._pick, self._log, self.generated
        while generated.bytes < target_bytes:
            log.now += timedelta(seconds=pick.expovariate(self._rate))
            yield from log.due()
            roll = pick.random()
            if roll < 0.06:
                yield from self._noise()
            elif roll < 0.09:
                yield from self._scanner()
            elif roll < 0.58:
                yield from self._inbound()
            else:
                yield from self._outbound()
        yield from log.rest()

    def _queue_id(self) -> str:
        self._queue_ids += self._pick.randrange(1, 40)
        return f"{self._queue_ids:X}"

    def _new_pid(self) -> int:
        self._pid = self._pid + self._pick.randrange(1, 9)
        if self._pid > 4_000_000:
            self._pid = 1000
        return self._pid

    def _step(self, most: float = 0.4) -> None:
        self._log.now += timedelta(seconds=self._pick.uniform(0, most))

    # messages

    def _inbound(self) -> Iterator[str]:
        pick, log = self._pick, self._log
        client_ip = f"203.0.113.{pick.randrange(1, 255)}"
        client = f"mail{pick.randrange(40)}.{pick.choice(_PARTNERS)}[{client_ip}]"
        sender = f"{pick.choice(_USERS)}@{pick.choice(_PARTNERS)}"
        recipients = [f"{user}@{ORGANIZATION_DOMAIN}"
                      for user in pick.sample(_USERS, pick.choice((1, 1, 1, 2, 3)))]
        smtpd = f"postfix/smtpd[{self._new_pid()}]"
        tls = pick.choice(_INBOUND_TLS)

        yield log.line(smtpd, f"connect from {client}")
        if tls is not None:
            self._step(0.05)
            yield log.line(smtpd, f"Anonymous TLS connection established from {client}: "
                                  f"{tls[0]} with cipher {tls[1]} (256/256 bits)")
        self._step()
        queue_id = self._queue_id()
        yield log.line(smtpd, f"{queue_id}: client={client}")
        size = pick.randrange(1_500, 400_000)
        yield from self._accepted(queue_id, sender, recipients, size)
        starttls = "starttls=1 " if tls else ""
        yield log.line(smtpd, f"disconnect from {client} ehlo=2 {starttls}mail=1 "
                              f"rcpt={len(recipients)} data=1 quit=1 commands=7")
        self.generated.messages += 1
        self.generated.inbound_facts += 1

        injected = yield from self._content_filter(queue_id, sender, recipients, size,
                                                   client_ip, "RelayedInbound")
        lmtp = f"postfix/lmtp[{self._new_pid()}]"
        for recipient in recipients:
            self._step(0.05)
            yield log.line(lmtp, f"{injected}: to=<{recipient}>, relay={HOST}.{ORGANIZATION_DOMAIN}"
                                 f"[/var/run/dovecot/lmtp], delay=0.2, delays=0/0.01/0.01/0.1, "
                                 f"dsn=2.0.0, status=sent (250 2.0.0 <{recipient}> Saved)")
            yield log.line("dovecot", f"lmtp({recipient})<{self._pid}><{queue_id}x>: "
                                      f"msgid=<{queue_id}@{sender.split('@')[1]}>: "
                                      "saved mail to INBOX")
        yield log.line(f"postfix/qmgr[{_QMGR}]", f"{injected}: removed")

    def _outbound(self) -> Iterator[str]:
        pick, log = self._pick, self._log
        user = pick.choice(_USERS)
        client_ip = f"192.0.2.{pick.randrange(1, 255)}"
        client = f"unknown[{client_ip}]"
        sender = f"{user}@{ORGANIZATION_DOMAIN}"
        domains = pick.sample(_PARTNERS, pick.choice((1, 1, 1, 1, 2, 3)))
        recipients = [f"{pick.choice(_USERS)}@{domain}" for domain in domains
                      for _ in range(pick.choice((1, 1, 2)))]
        smtpd = f"postfix/submission/smtpd[{self._new_pid()}]"

        yield log.line(smtpd, f"connect from {client}")
        yield log.line(smtpd, f"Anonymous TLS connection established from {client}: "
                              "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
        self._step()
        queue_id = self._queue_id()
        yield log.line(smtpd, f"{queue_id}: client={client}, sasl_method=PLAIN, "
                              f"sasl_username={sender}")
        size = pick.randrange(800, 2_000_000)
        yield from self._accepted(queue_id, sender, recipients, size)
        yield log.line(smtpd, f"disconnect from {client} ehlo=2 starttls=1 auth=1 mail=1 "
                              f"rcpt={len(recipients)} data=1 quit=1 commands=8")
        self.generated.messages += 1

        injected = yield from self._content_filter(queue_id, sender, recipients, size,
                                                   client_ip, "ORIGINATING")
        for domain in domains:
            yield from self._relay(injected, domain, [r for r in recipients
                                                      if r.endswith("@" + domain)])
            self.generated.outbound_facts += 1
        log.later(log.now + _RETRY_AFTER + timedelta(seconds=1), f"postfix/qmgr[{_QMGR}]",
                  f"{injected}: removed")

    def _relay(self, queue_id: str, domain: str, recipients: list[str]) -> Iterator[str]:
        """Delivery to the domain's relay; a few fail first and are sent at the retry."""
        pick, log = self._pick, self._log
        relay_ip = f"198.51.100.{_PARTNERS.index(domain) % 250 + 1}"
        relay = f"mx.{domain}[{relay_ip}]:25"
        tls = pick.choice(_OUTBOUND_TLS)
        deferred = pick.random() < _DEFERRED_SHARE
        smtp = f"postfix/smtp[{self._new_pid()}]"
        if deferred:
            for recipient in recipients:
                yield log.line(smtp, f"{queue_id}: to=<{recipient}>, relay=none, delay=30, "
                                     f"delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to "
                                     f"{relay}: Connection timed out)")
        self._step(0.3)
        lines = []
        if tls is not None:
            lines.append((smtp, f"Untrusted TLS connection established to {relay}: {tls[0]} "
                                f"with cipher {tls[1]} (128/128 bits)"))
        for recipient in recipients:
            lines.append((smtp, f"{queue_id}: to=<{recipient}>, relay={relay}, delay=1.2, "
                                "delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent "
                                f"(250 2.0.0 Ok: queued as {pick.getrandbits(40):010x})"))
        if deferred:
            for program, text in lines:
                log.later(log.now + _RETRY_AFTER, program, text)
        else:
            for program, text in lines:
                yield log.line(program, text)

    def _accepted(self, queue_id: str, sender: str, recipients: list[str],
                  size: int) -> Iterator[str]:
        """cleanup and qmgr taking the message in."""
        log = self._log
        yield log.line(f"postfix/cleanup[{self._pid + 3}]",
                       f"{queue_id}: message-id=<{queue_id}.{self._pick.getrandbits(32):x}@"
                       f"{sender.split('@')[1]}>")
        yield log.line(f"postfix/qmgr[{_QMGR}]",
                       f"{queue_id}: from=<{sender}>, size={size}, nrcpt={len(recipients)} "
                       "(queue active)")

    def _content_filter(self, queue_id: str, sender: str, recipients: list[str], size: int,
                        client_ip: str, policy: str) -> Generator[str, None, str]:
        """The hop through amavis and back under a new queue id, which it returns."""
        log = self._log
        self._step(0.5)
        injected = self._queue_id()
        yield log.line(f"postfix/smtpd[{self._new_pid()}]",
                       f"{injected}: client=localhost[127.0.0.1]")
        yield from self._accepted(injected, sender, recipients, size + 900)
        amavis = f"amavis[{self._pid % 9000 + 1000}]"
        yield log.line(amavis, f"({self._pid:05d}-01) Passed CLEAN {{{policy}}}, [{client_ip}] "
                               f"<{sender}> -> {','.join(f'<{r}>' for r in recipients)}, "
                               f"Queue-ID: {queue_id}, Hits: -1.2, size: {size}, "
                               f"queued_as: {injected}, 420 ms")
        smtp = f"postfix/smtp[{self._new_pid()}]"
        for recipient in recipients:
            yield log.line(smtp, f"{queue_id}: to=<{recipient}>, relay=127.0.0.1[127.0.0.1]:10024, "
                                 "delay=0.6, delays=0.1/0/0/0.5, dsn=2.0.0, status=sent (250 2.0.0 "
                                 "from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as "
                                 f"{injected})")
        yield log.line(f"postfix/qmgr[{_QMGR}]", f"{queue_id}: removed")
        return injected

    # lines that carry no mail

    def _noise(self) -> Iterator[str]:
        pick, log = self._pick, self._log
        user = pick.choice(_USERS)
        ip = f"192.0.2.{pick.randrange(1, 255)}"
        kind = pick.randrange(4)
        if kind == 0:
            yield log.line("dovecot", f"imap-login: Login: user=<{user}@{ORGANIZATION_DOMAIN}>, "
                                      f"method=PLAIN, rip={ip}, lip=192.0.2.1, mpid={self._pid}, "
                                      "TLS, session=<k3Xb9FZr>")
        elif kind == 1:
            yield log.line("dovecot", f"imap({user}@{ORGANIZATION_DOMAIN})<{self._pid}>: "
                                      "Disconnected: Logged out in=120 out=4211")
        elif kind == 2:
            anvil = f"postfix/anvil[{_ANVIL}]"
            yield log.line(anvil, f"statistics: max connection rate 2/60s for (smtp:{ip}) "
                                  f"at {log.stamp(log.now)}")
            yield log.line(anvil, f"statistics: max connection count 1 for (smtp:{ip}) "
                                  f"at {log.stamp(log.now)}")
        else:
            yield log.line(f"opendkim[{_OPENDKIM}]", f"{self._queue_id()}: DKIM verification "
                                                      "successful")

    def _scanner(self) -> Iterator[str]:
        """A client that connects and goes away without sending mail."""
        pick, log = self._pick, self._log
        client = f"unknown[203.0.113.{pick.randrange(1, 255)}]"
        smtpd = f"postfix/smtpd[{self._new_pid()}]"
        yield log.line(smtpd, f"connect from {client}")
        self._step(2)
        yield log.line(smtpd, f"lost connection after EHLO from {client}")
        yield log.line(smtpd, f"disconnect from {client} ehlo=1 commands=1")


_QMGR = 1789
_ANVIL = 1802
_OPENDKIM = 289
