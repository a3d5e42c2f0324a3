#!/usr/bin/env python3
"""Times the peer over a pre-produced input topic.

Starts the peer (every argument after `--` is passed to it), and polls the
committed offsets of its consumer group (the application id) every 100 ms
until they reach the input topic's end offsets, as they were when the run
started. Prints the time from process start to RUNNING and to "all input
committed", the event rate over the latter, and the CPU time the peer and
the whole machine spent until then (to spot other load), then stops the
peer with SIGTERM and waits for it to close.

    measure.py --jar target/streams-peer.jar -- \
        --bootstrap 127.0.0.1:9092 --input IN --output OUT --application-id ID

Needs confluent-kafka (the Python under ~/.cache/weir/python has it).
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka import Consumer


def option(args, name):
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    sys.exit(f"the peer's arguments need {name}")


def process_cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_seconds():
    """CPU time the whole machine spent not idle so far, all cores (Linux /proc)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jar", default="target/streams-peer.jar")
    parser.add_argument("--java", default="java")
    parser.add_argument("--jvm-arg", action="append", default=[], help="extra JVM option (repeatable)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("peer_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    peer_args = args.peer_args[1:] if args.peer_args[:1] == ["--"] else args.peer_args
    bootstrap = option(peer_args, "--bootstrap")
    topic = option(peer_args, "--input")
    group = option(peer_args, "--application-id")

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-measure-probe"})
    partitions = sorted(probe.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    starts = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in partitions}
    probe.close()
    events = sum(ends[p] - starts[p] for p in partitions)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    busy_before = machine_busy_seconds()
    started = time.monotonic()
    peer = subprocess.Popen([args.java, *args.jvm_arg, "-jar", args.jar, *peer_args],
                            stdout=subprocess.PIPE, text=True)
    running_at = []

    def watch_stdout():
        for line in peer.stdout:
            if line.strip() == "RUNNING" and not running_at:
                running_at.append(time.monotonic())

    threading.Thread(target=watch_stdout, daemon=True).start()
    done_at = None
    try:
        while time.monotonic() - started < args.timeout:
            if peer.poll() is not None:
                sys.exit(f"the peer exited early with status {peer.returncode}")
            request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
            try:
                result = admin.list_consumer_group_offsets([request])[group].result()
                committed = {tp.partition: tp.offset for tp in result.topic_partitions}
            except Exception:  # the group does not exist yet
                committed = {}
            if all(committed.get(p, -1) >= ends[p] for p in partitions):
                done_at = time.monotonic()
                peer_cpu = process_cpu_seconds(peer.pid)
                busy = machine_busy_seconds() - busy_before
                break
            time.sleep(0.1)
    finally:
        peer.send_signal(signal.SIGTERM)
        try:
            status = peer.wait(timeout=90)
        except subprocess.TimeoutExpired:
            peer.kill()
            status = peer.wait()
    if done_at is None:
        sys.exit(f"timed out: the input was not all committed within {args.timeout} s")
    total = done_at - started
    print(f"events: {events}")
    if running_at:
        print(f"start to RUNNING: {running_at[0] - started:.2f} s")
        after = done_at - running_at[0]
        print(f"RUNNING to all input committed: {after:.2f} s ({events / after:,.0f} ev/s)")
    print(f"start to all input committed: {total:.2f} s ({events / total:,.0f} ev/s)")
    if peer_cpu is not None:
        print(f"CPU until then: peer {peer_cpu:.1f} s, whole machine {busy:.1f} s "
              f"(of {total * os.cpu_count():.1f} s on {os.cpu_count()} cores)")
    print(f"peer exit status after SIGTERM: {status}")


if __name__ == "__main__":
    main()
