#!/usr/bin/env python3
"""Helpers of the notify benchmark (bench/notify/run.sh); each prints one JSON object.

  probe.py metrics URL TOKEN
      chatgw's /metrics (GET URL/metrics with the bearer TOKEN):
      {"notify_200": answers 200 of POST /v1/notify/text, "notify_other": its other answers,
       "depth": {channel: chatgw_outbox_depth}, "out": {"channel/result": chatgw_chat_messages_out_total},
       "retries": sum of chatgw_outbox_retries_total,
       "send_s"/"sends": {channel: chatgw_outbox_send_seconds sum / count},
       "store": {"kind/result": chatgw_store_jobs_total}}
  probe.py cpu PID [PID...]
      {"ticks": [utime + stime of each PID, all threads, clock ticks], "tck": CLK_TCK}
  probe.py wait TG_URL WANT_TG FS_URL WANT_FS PID TIMEOUT_S
      polls both fakes' /control/stats every 10 ms (keep-alive) until the Telegram fake counts
      WANT_TG sends and the Feishu fake WANT_FS, at most TIMEOUT_S seconds; then reads the CPU
      ticks of PID (chatgw):
      {"ok": reached, "t_done": epoch seconds when seen, "ticks": ..., "tg": stats, "fs": stats,
       "first": {"tg", "fs": the sends counted at the first poll}}
  probe.py drain GW_URL TOKEN BASE_200 TG_URL TG_BEFORE FS_URL FS_BEFORE PER_FS PID TIMEOUT_S
      after a load: reads chatgw's metrics (m1: the backlog now), then waits as `wait` until the
      fakes count TG_BEFORE + A and FS_BEFORE + A * PER_FS sends, A being the notifies chatgw
      answered 200 since BASE_200; reads the metrics again (m2) and, if A grew meanwhile
      (requests still in flight when wrk stopped), waits for those too (at most 3 rounds):
      {"ok", "t_done", "ticks", "tg", "fs", "first" (as wait, first: just after m1), "m1", "m2",
       "accepted", "want_tg", "want_fs", "settled"}
Only 127.0.0.1 URLs are accepted. Every loop is bounded.
"""
import http.client
import json
import os
import re
import sys
import time
import urllib.parse


def conn_of(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1":
        sys.exit("probe.py: only http://127.0.0.1 URLs: " + url)
    return http.client.HTTPConnection("127.0.0.1", u.port, timeout=5), u.path.rstrip("/")


def get(conn, path, headers=None):
    for attempt in range(2):  # a keep-alive connection the server closed: once more
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                sys.exit("probe.py: GET %s: HTTP %d %s" % (path, r.status, body[:200]))
            return body.decode()
        except (http.client.HTTPException, ConnectionError):
            conn.close()
            if attempt:
                raise
    return ""


def ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)


LINE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


def metrics(url, token):
    conn, base = conn_of(url)
    text = get(conn, base + "/metrics", {"Authorization": "Bearer " + token})
    out = {"notify_200": 0, "notify_other": 0, "depth": {}, "out": {}, "retries": 0, "send_s": {}, "sends": {}, "store": {}}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), float(m.group(3))
        if name == "chatgw_http_requests_total" and labels.get("route") == "POST /v1/notify/text":
            key = "notify_200" if labels.get("status") == "200" else "notify_other"
            out[key] += int(value)
        elif name == "chatgw_outbox_depth":
            out["depth"][labels.get("channel", "?")] = int(value)
        elif name == "chatgw_chat_messages_out_total":
            k = "%s/%s" % (labels.get("channel", "?"), labels.get("result", "?"))
            out["out"][k] = out["out"].get(k, 0) + int(value)
        elif name == "chatgw_outbox_send_seconds_sum":
            out["send_s"][labels.get("channel", "?")] = value
        elif name == "chatgw_outbox_send_seconds_count":
            out["sends"][labels.get("channel", "?")] = int(value)
        elif name == "chatgw_store_jobs_total":
            k = "%s/%s" % (labels.get("kind", "?"), labels.get("result", "?"))
            out["store"][k] = out["store"].get(k, 0) + int(value)
        elif name == "chatgw_outbox_retries_total":
            out["retries"] += int(value)
    return out


def wait(tg_url, want_tg, fs_url, want_fs, pid, timeout_s):
    tg, tg_base = conn_of(tg_url)
    fs, fs_base = conn_of(fs_url)
    deadline = time.time() + timeout_s
    st_tg = st_fs = first = None
    ok = False
    for _ in range(int(timeout_s * 100) + 1):
        st_tg = json.loads(get(tg, tg_base + "/control/stats"))
        st_fs = json.loads(get(fs, fs_base + "/control/stats"))
        first = first or {"tg": st_tg["sent"], "fs": st_fs["sent"]}
        if st_tg["sent"] >= want_tg and st_fs["sent"] >= want_fs:
            ok = True
            break
        if time.time() >= deadline:
            break
        time.sleep(0.01)
    t_done = time.time()
    return {"ok": ok, "t_done": t_done, "ticks": ticks(pid), "tg": st_tg, "fs": st_fs, "first": first}


def drain(gw_url, token, base_200, tg_url, tg_before, fs_url, fs_before, per_fs, pid, timeout_s):
    deadline = time.time() + timeout_s
    m1 = m = metrics(gw_url, token)
    first = None
    for _ in range(3):
        accepted = m["notify_200"] - base_200
        want_tg, want_fs = tg_before + accepted, fs_before + accepted * per_fs
        w = wait(tg_url, want_tg, fs_url, want_fs, pid, max(0.0, deadline - time.time()))
        first = first or w["first"]  # the fakes' counts just after m1
        m2 = metrics(gw_url, token)
        if not w["ok"] or m2["notify_200"] == m["notify_200"]:
            break
        m = m2
    w.update({"m1": m1, "m2": m2, "first": first, "accepted": accepted, "want_tg": want_tg, "want_fs": want_fs,
              "settled": m2["notify_200"] == m["notify_200"]})
    return w


def main(argv):
    if len(argv) >= 3 and argv[0] == "metrics":
        print(json.dumps(metrics(argv[1], argv[2])))
    elif len(argv) >= 2 and argv[0] == "cpu":
        print(json.dumps({"ticks": [ticks(int(p)) for p in argv[1:]], "tck": os.sysconf("SC_CLK_TCK")}))
    elif len(argv) == 7 and argv[0] == "wait":
        print(json.dumps(wait(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]), float(argv[6]))))
    elif len(argv) == 11 and argv[0] == "drain":
        a = argv[1:]
        print(json.dumps(drain(a[0], a[1], int(a[2]), a[3], int(a[4]), a[5], int(a[6]), int(a[7]), int(a[8]),
                               float(a[9]))))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
