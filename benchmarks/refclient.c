/*
 * refclient.c: the project's own minimal C client for beanstalkd, the reference
 * that benchmarks/bench.py quotes every Python client against ("ratio to C").
 *
 * It does what a careful hand-written C client would do and nothing more: plain
 * blocking POSIX sockets with TCP_NODELAY, one growable receive buffer parsed in
 * place, no allocation inside the timed loops, and the body sent from where it
 * lies (writev) instead of being copied.  Sync workloads make one round trip per
 * command; batch workloads keep a bounded window of commands in flight.
 *
 * Workloads (-w):
 *   put     put one job, wait for INSERTED                       (1 round trip)
 *   resdel  reserve-with-timeout 0, then delete the job           (2 round trips)
 *   cycle   put + reserve-with-timeout 0 + delete                 (3 round trips)
 *   stats   stats, reply read as raw bytes (no YAML parsing)      (1 round trip)
 *   pput    puts, at most -W unanswered at any time
 *   pres    reserve-with-timeout 0 x B then delete x B, pipelined, per batch of -B
 * A 64 KiB put is `-w put -s 65536`.
 *
 * Verification (untimed where it needs extra commands, like the Python clients):
 * every job carries its sequence number in its body; jobs put are reserved back
 * and must arrive in order with the id the put returned and the exact body;
 * prefilled jobs reserved in the timed section are checked the same way; the
 * tube must be empty at the end.  Puts run in segments of at most 128 MiB,
 * drained between segments.
 *
 * Output: one JSON line on stdout, e.g.
 *   {"client": "refclient", "workload": "put", "n": 1000, "body_bytes": 100,
 *    "seconds": 0.05, "ops_per_s": 20000.0, "cpu_user_s": 0.01,
 *    "cpu_sys_s": 0.02, "server_cpu_s": null, "verified": true}
 * server_cpu_s is beanstalkd's user+sys time over the timed sections, read from
 * /proc/PID/stat when -P gives its PID (10 ms ticks), else null.
 * Exit status 0 when verified, 1 when a check failed, 2 on a usage, protocol or
 * connection error (with a message on stderr).
 *
 * Build: cc -O2 -Wall -o refclient refclient.c   (make bench does this)
 * Usage: refclient -p PORT -w WORKLOAD -n N [-H HOST] [-s BYTES] [-W WINDOW] [-B BATCH]
 *                  [-P SERVER_PID]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SEQ_DIGITS 16                /* sequence number at the start of a body */
#define SEGMENT_BYTES (128u << 20)   /* puts between two untimed drains */
#define RECV_STEP (64u << 10)

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("refclient: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        fail("out of memory (%zu bytes)", n);
    return p;
}

/* ------------------------------------------------------------ connection -- */

struct conn {
    int fd;
    char *in;            /* received bytes in[head..tail) not yet parsed */
    size_t cap, head, tail;
    char *out;           /* staging area for pipelined commands */
    size_t out_cap;
};

static void send_iov(struct conn *c, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(c->fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("send: %s", strerror(errno));
        }
        size_t left = (size_t)n;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
}

static void send_bytes(struct conn *c, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    send_iov(c, &iov, 1);
}

/* Receive until at least `want` unparsed bytes are buffered, contiguously. */
static void recv_at_least(struct conn *c, size_t want)
{
    while (c->tail - c->head < want) {
        size_t have = c->tail - c->head;
        if (c->head > 0 && (c->cap - c->tail < RECV_STEP || c->head + want > c->cap)) {
            memmove(c->in, c->in + c->head, have);   /* slide the rest to the front */
            c->head = 0;
            c->tail = have;
        }
        if (c->head + want > c->cap) {
            c->cap = c->head + want + RECV_STEP;
            c->in = realloc(c->in, c->cap);
            if (c->in == NULL)
                fail("out of memory");
        }
        ssize_t n = recv(c->fd, c->in + c->tail, c->cap - c->tail, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("recv: %s", strerror(errno));
        }
        if (n == 0)
            fail("the server closed the connection");
        c->tail += (size_t)n;
    }
}

static int has_unparsed(const struct conn *c) { return c->tail > c->head; }

/* The next reply line without its CRLF, NUL-terminated in the buffer; valid
 * until the next receive. */
static char *recv_line(struct conn *c)
{
    size_t from = 0;
    for (;;) {
        char *start = c->in + c->head;
        size_t have = c->tail - c->head;
        char *lf = have > from ? memchr(start + from, '\n', have - from) : NULL;
        if (lf != NULL) {
            if (lf == start || lf[-1] != '\r')
                fail("reply line not terminated by CRLF");
            lf[-1] = '\0';
            c->head += (size_t)(lf - start) + 1;
            return start;
        }
        if (have > 1024)
            fail("reply line longer than 1024 bytes");
        from = have;
        recv_at_least(c, have + 1);
    }
}

/* The next n data bytes, which must be followed by CRLF; both are consumed. */
static const char *recv_data(struct conn *c, size_t n)
{
    recv_at_least(c, n + 2);
    const char *p = c->in + c->head;
    if (p[n] != '\r' || p[n + 1] != '\n')
        fail("data of %zu bytes not followed by CRLF", n);
    c->head += n + 2;
    return p;
}

/* "<prefix><number>" -> number; anything else is a protocol error. */
static uint64_t reply_number(const char *line, const char *prefix, const char **rest)
{
    size_t k = strlen(prefix);
    if (strncmp(line, prefix, k) != 0 || line[k] < '0' || line[k] > '9')
        fail("expected \"%s<n>\", got \"%s\"", prefix, line);
    char *end;
    uint64_t v = strtoull(line + k, &end, 10);
    *rest = end;
    return v;
}

static void expect_reply(struct conn *c, const char *want)
{
    const char *line = recv_line(c);
    if (strcmp(line, want) != 0)
        fail("expected \"%s\", got \"%s\"", want, line);
}

static struct conn *connect_to(const char *host, const char *port, const char *tube)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        fail("%s:%s: %s", host, port, gai_strerror(rc));
    int fd = -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        fail("cannot connect to %s:%s: %s", host, port, strerror(errno));
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);

    struct conn *c = xmalloc(sizeof *c);
    c->fd = fd;
    c->cap = 4 * RECV_STEP;
    c->in = xmalloc(c->cap);
    c->head = c->tail = 0;
    c->out_cap = 256u << 10;
    c->out = xmalloc(c->out_cap);

    char cmd[600], want[300];
    int n = snprintf(cmd, sizeof cmd, "use %s\r\nwatch %s\r\nignore default\r\n", tube, tube);
    send_bytes(c, cmd, (size_t)n);
    snprintf(want, sizeof want, "USING %s", tube);
    expect_reply(c, want);
    expect_reply(c, "WATCHING 2");
    expect_reply(c, "WATCHING 1");
    return c;
}

static void disconnect(struct conn *c)
{
    send_bytes(c, "quit\r\n", 6);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* ------------------------------------------------------------------ jobs -- */

/* Job number `seq` has a body of `body_len` bytes: SEQ_DIGITS decimal digits of
 * seq, then a fixed pattern.  The put header is the same for every job. */
static size_t body_len = 100;
static char *body;                 /* the pattern; its first digits are rewritten per job */
static char put_header[64];
static size_t put_header_len;

static void jobs_init(size_t len)
{
    if (len < SEQ_DIGITS)
        fail("body size must be at least %d bytes", SEQ_DIGITS);
    body_len = len;
    body = xmalloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('A' + (i * 7) % 26);
    put_header_len = (size_t)snprintf(put_header, sizeof put_header,
                                      "put 0 0 120 %zu\r\n", len);
}

static void stamp(char *dst, uint64_t seq)
{
    for (int i = SEQ_DIGITS - 1; i >= 0; i--, seq /= 10)
        dst[i] = (char)('0' + seq % 10);
}

static int body_is(const char *got, size_t len, uint64_t seq)
{
    char digits[SEQ_DIGITS];
    stamp(digits, seq);
    return len == body_len && memcmp(got, digits, SEQ_DIGITS) == 0 &&
           memcmp(got + SEQ_DIGITS, body + SEQ_DIGITS, body_len - SEQ_DIGITS) == 0;
}

/* Send job `seq` without copying its body: header, body, CRLF in one writev. */
static void send_put(struct conn *c, uint64_t seq)
{
    stamp(body, seq);
    struct iovec iov[3] = {{put_header, put_header_len}, {body, body_len}, {"\r\n", 2}};
    send_iov(c, iov, 3);
}

static uint64_t recv_inserted(struct conn *c)
{
    const char *rest;
    uint64_t id = reply_number(recv_line(c), "INSERTED ", &rest);
    if (*rest != '\0')
        fail("malformed INSERTED reply");
    return id;
}

/* RESERVED <id> <bytes> + body; returns the id, points *data at the body. */
static uint64_t recv_reserved(struct conn *c, const char **data, size_t *len)
{
    const char *rest;
    uint64_t id = reply_number(recv_line(c), "RESERVED ", &rest);
    if (*rest != ' ')
        fail("malformed RESERVED reply");
    *len = (size_t)strtoull(rest + 1, NULL, 10);
    *data = recv_data(c, *len);
    return id;
}

static size_t format_delete(char *dst, uint64_t id)
{
    return (size_t)sprintf(dst, "delete %llu\r\n", (unsigned long long)id);
}

/* ------------------------------------------------------------ pipelining -- */

/* One kind of pipelined command: `emit` writes command k into dst and returns
 * its length (at most `max_len`); `take` reads and checks reply k. */
struct pipe_ops {
    size_t max_len;
    size_t (*emit)(void *state, size_t k, char *dst);
    void (*take)(void *state, size_t k, struct conn *c);
};

/* Run n commands with at most `window` unanswered.  New commands are staged
 * and sent together once half the window or less is in flight, so each send
 * carries many commands. */
static void pipelined(struct conn *c, size_t n, size_t window,
                      const struct pipe_ops *ops, void *state)
{
    if (c->out_cap < ops->max_len) {
        c->out_cap = ops->max_len;
        c->out = realloc(c->out, c->out_cap);
        if (c->out == NULL)
            fail("out of memory");
    }
    size_t sent = 0, answered = 0;
    while (answered < n) {
        if (sent < n && sent - answered <= window / 2) {
            size_t limit = answered + window < n ? answered + window : n;
            size_t used = 0;
            while (sent < limit && used + ops->max_len <= c->out_cap)
                used += ops->emit(state, sent++, c->out + used);
            send_bytes(c, c->out, used);
        }
        do
            ops->take(state, answered++, c);
        while (answered < sent && has_unparsed(c));
    }
}

struct batch {
    uint64_t first_seq;    /* job k carries sequence first_seq + k */
    uint64_t *ids;         /* ids[k]: the id job k must have (NULL: unknown) */
    uint64_t *reserved;    /* ids as reserved, for the deletes */
    size_t mismatches;
};

static size_t emit_put(void *state, size_t k, char *dst)
{
    struct batch *b = state;
    char *p = dst;
    memcpy(p, put_header, put_header_len);
    p += put_header_len;
    memcpy(p, body, body_len);
    stamp(p, b->first_seq + k);
    p += body_len;
    memcpy(p, "\r\n", 2);
    return (size_t)(p + 2 - dst);
}

static void take_put(void *state, size_t k, struct conn *c)
{
    struct batch *b = state;
    b->ids[k] = recv_inserted(c);
}

static size_t emit_reserve(void *state, size_t k, char *dst)
{
    (void)state;
    (void)k;
    memcpy(dst, "reserve-with-timeout 0\r\n", 24);
    return 24;
}

static void take_reserve(void *state, size_t k, struct conn *c)
{
    struct batch *b = state;
    const char *data;
    size_t len;
    uint64_t id = recv_reserved(c, &data, &len);
    b->reserved[k] = id;
    if ((b->ids != NULL && b->ids[k] != id) || !body_is(data, len, b->first_seq + k))
        b->mismatches++;
}

static size_t emit_delete(void *state, size_t k, char *dst)
{
    struct batch *b = state;
    return format_delete(dst, b->reserved[k]);
}

static void take_delete(void *state, size_t k, struct conn *c)
{
    (void)state;
    (void)k;
    expect_reply(c, "DELETED");
}

static size_t window = 512, batch_size = 512;

/* Put n jobs with sequences first_seq.., pipelined; ids[k] gets job k's id. */
static void put_pipelined(struct conn *c, size_t n, uint64_t first_seq, uint64_t *ids)
{
    const struct pipe_ops ops = {put_header_len + body_len + 2, emit_put, take_put};
    struct batch b = {first_seq, ids, NULL, 0};
    pipelined(c, n, window, &ops, &b);
}

/* Reserve and delete n jobs in batches; job k must be sequence first_seq + k
 * (and have id ids[k] when ids is given).  Returns the number of mismatches. */
static size_t take_back_batched(struct conn *c, size_t n, uint64_t first_seq,
                                uint64_t *ids, uint64_t *reserved)
{
    static const struct pipe_ops reserve_ops = {24, emit_reserve, take_reserve};
    static const struct pipe_ops delete_ops = {32, emit_delete, take_delete};
    size_t mismatches = 0;
    for (size_t done = 0; done < n; done += batch_size) {
        size_t m = n - done < batch_size ? n - done : batch_size;
        struct batch b = {first_seq + done, ids ? ids + done : NULL, reserved + done, 0};
        pipelined(c, m, window, &reserve_ops, &b);
        pipelined(c, m, window, &delete_ops, &b);
        mismatches += b.mismatches;
    }
    return mismatches;
}

static int tube_is_empty(struct conn *c)
{
    send_bytes(c, "reserve-with-timeout 0\r\n", 24);
    return strcmp(recv_line(c), "TIMED_OUT") == 0;
}

/* ----------------------------------------------------------- measurement -- */

struct clock {
    double wall, user, sys, server;   /* sums over every timed section */
    double wall0, user0, sys0, server0;
};

static long server_pid = 0;          /* -P: beanstalkd's PID, to read its CPU time */

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void cpu_times(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of the server in seconds (from /proc/PID/stat), or 0 without -P */
static double server_cpu(void)
{
    if (server_pid <= 0)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail("cannot read %s", path);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* after the command name: state(3) ... utime(14) stime(15) */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                            &ut, &st) != 2)
        fail("cannot parse %s", path);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void clock_start(struct clock *k)
{
    k->server0 = server_cpu();
    cpu_times(&k->user0, &k->sys0);
    k->wall0 = monotonic();
}

static void clock_stop(struct clock *k)
{
    double t = monotonic(), u, s;
    cpu_times(&u, &s);
    k->wall += t - k->wall0;
    k->user += u - k->user0;
    k->sys += s - k->sys0;
    k->server += server_cpu() - k->server0;
}

/* ------------------------------------------------------------- workloads -- */

/* put / pput: timed puts in segments; each segment drained and checked untimed. */
static int run_put(struct conn *c, size_t n, int pipeline, struct clock *k)
{
    size_t seg = SEGMENT_BYTES / body_len;
    seg = seg < 1 ? 1 : seg < n ? seg : n;
    uint64_t *ids = xmalloc(seg * sizeof *ids), *reserved = xmalloc(seg * sizeof *reserved);
    size_t mismatches = 0;
    for (size_t done = 0; done < n; done += seg) {
        size_t m = n - done < seg ? n - done : seg;
        clock_start(k);
        if (pipeline) {
            put_pipelined(c, m, done, ids);
        } else {
            for (size_t i = 0; i < m; i++) {
                send_put(c, done + i);
                ids[i] = recv_inserted(c);
            }
        }
        clock_stop(k);
        mismatches += take_back_batched(c, m, done, ids, reserved);
    }
    free(ids);
    free(reserved);
    return mismatches == 0 && tube_is_empty(c);
}

/* resdel / pres: n prefilled jobs (untimed), reserved and deleted in the timed section. */
static int run_resdel(struct conn *c, size_t n, int pipeline, struct clock *k)
{
    uint64_t *ids = xmalloc(n * sizeof *ids), *reserved = xmalloc(n * sizeof *reserved);
    size_t mismatches = 0;
    put_pipelined(c, n, 0, ids);
    clock_start(k);
    if (pipeline) {
        mismatches = take_back_batched(c, n, 0, ids, reserved);
    } else {
        char cmd[40];
        for (size_t i = 0; i < n; i++) {
            const char *data;
            size_t len;
            send_bytes(c, "reserve-with-timeout 0\r\n", 24);
            uint64_t id = recv_reserved(c, &data, &len);
            if (id != ids[i] || !body_is(data, len, i))
                mismatches++;
            send_bytes(c, cmd, format_delete(cmd, id));
            expect_reply(c, "DELETED");
        }
    }
    clock_stop(k);
    free(ids);
    free(reserved);
    return mismatches == 0 && tube_is_empty(c);
}

/* cycle: put, reserve the same job back, delete it. */
static int run_cycle(struct conn *c, size_t n, struct clock *k)
{
    size_t mismatches = 0;
    char cmd[40];
    clock_start(k);
    for (size_t i = 0; i < n; i++) {
        const char *data;
        size_t len;
        send_put(c, i);
        uint64_t id = recv_inserted(c);
        send_bytes(c, "reserve-with-timeout 0\r\n", 24);
        if (recv_reserved(c, &data, &len) != id || !body_is(data, len, i))
            mismatches++;
        send_bytes(c, cmd, format_delete(cmd, id));
        expect_reply(c, "DELETED");
    }
    clock_stop(k);
    return mismatches == 0 && tube_is_empty(c);
}

/* stats: raw round trips; the YAML must hold current-jobs-ready (checked once,
 * untimed, like the Python clients' parsed dict) and every reply is framed. */
static int run_stats(struct conn *c, size_t n, struct clock *k)
{
    const char *rest, *data;
    size_t len;
    send_bytes(c, "stats\r\n", 7);
    len = (size_t)reply_number(recv_line(c), "OK ", &rest);
    data = recv_data(c, len);
    int ok = memmem(data, len, "\ncurrent-jobs-ready: ", 21) != NULL;
    clock_start(k);
    for (size_t i = 0; i < n; i++) {
        send_bytes(c, "stats\r\n", 7);
        len = (size_t)reply_number(recv_line(c), "OK ", &rest);
        data = recv_data(c, len);
        if (len < 4 || memcmp(data, "---\n", 4) != 0)
            ok = 0;
    }
    clock_stop(k);
    return ok;
}

static void usage(const char *argv0, int status)
{
    fprintf(status ? stderr : stdout,
            "usage: %s -p PORT -w put|resdel|cycle|stats|pput|pres -n N\n"
            "          [-H HOST] [-s BODY_BYTES] [-W WINDOW] [-B BATCH] [-P SERVER_PID]\n", argv0);
    exit(status);
}

static size_t positive(const char *arg, const char *what)
{
    char *end;
    unsigned long long v = strtoull(arg, &end, 10);
    if (*arg == '\0' || *end != '\0' || v == 0)
        fail("%s must be a positive integer, got \"%s\"", what, arg);
    return (size_t)v;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *workload = NULL;
    size_t n = 0, size = 100;
    int opt;
    while ((opt = getopt(argc, argv, "H:p:w:n:s:W:B:P:h")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = optarg; break;
        case 'w': workload = optarg; break;
        case 'n': n = positive(optarg, "-n"); break;
        case 's': size = positive(optarg, "-s"); break;
        case 'W': window = positive(optarg, "-W"); break;
        case 'B': batch_size = positive(optarg, "-B"); break;
        case 'P': server_pid = (long)positive(optarg, "-P"); break;
        case 'h': usage(argv[0], 0); break;
        default: usage(argv[0], 2);
        }
    }
    if (port == NULL || workload == NULL || n == 0 || optind != argc)
        usage(argv[0], 2);
    jobs_init(size);

    static const char *const names[] = {"put", "pput", "resdel", "pres", "cycle", "stats"};
    size_t w = 0;
    while (w < sizeof names / sizeof *names && strcmp(names[w], workload) != 0)
        w++;
    if (w == sizeof names / sizeof *names)
        fail("unknown workload \"%s\"", workload);

    char tube[128];
    snprintf(tube, sizeof tube, "refclient-%s-%ld-%lx", workload, (long)getpid(),
             (unsigned long)(monotonic() * 1e6));
    struct conn *c = connect_to(host, port, tube);
    struct clock k = {0};
    int verified;
    switch (w) {
    case 0: verified = run_put(c, n, 0, &k); break;
    case 1: verified = run_put(c, n, 1, &k); break;
    case 2: verified = run_resdel(c, n, 0, &k); break;
    case 3: verified = run_resdel(c, n, 1, &k); break;
    case 4: verified = run_cycle(c, n, &k); break;
    default: verified = run_stats(c, n, &k); break;
    }
    disconnect(c);

    char server[32] = "null";
    if (server_pid > 0)
        snprintf(server, sizeof server, "%.6f", k.server);

    printf("{\"client\": \"refclient\", \"workload\": \"%s\", \"n\": %zu, "
           "\"body_bytes\": %zu, \"window\": %zu, \"batch\": %zu, \"seconds\": %.6f, "
           "\"ops_per_s\": %.1f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f, "
           "\"server_cpu_s\": %s, \"verified\": %s}\n",
           workload, n, body_len, window, batch_size, k.wall,
           k.wall > 0 ? (double)n / k.wall : 0.0, k.user, k.sys, server,
           verified ? "true" : "false");
    return verified ? 0 : 1;
}
