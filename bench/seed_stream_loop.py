"""The streaming loop ML engineers write in Python, one message at a time: read a message,
json.loads, extract every numeric field (nested objects flattened), score it with an
IsolationForest, write the alert (and acknowledge). On Redis Streams with redis-py; on
Kafka with confluent-kafka, the way a Kafka consumer class of that loop does it (poll,
process, produce, producer.poll(0); offsets auto-committed). Used by bench/stream_bench.sh
for comparison.

    python3 bench/seed_stream_loop.py REDIS_URL STREAM ALERTS SECONDS
    python3 bench/seed_stream_loop.py kafka://HOST:PORT TOPIC ALERTS SECONDS
"""
import json
import sys
import time

import numpy as np
from sklearn.ensemble import IsolationForest


def extract_features(data):
    features = []
    for value in data.values():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            features.append(float(value))
        elif isinstance(value, dict):
            features.extend(extract_features(value))
    return features


def alert(model, data, t0):
    features = extract_features(data)
    score = float(-model.score_samples([features])[0])
    is_anomaly = bool(model.predict([features])[0] == -1)
    return {
        "timestamp": data.get("timestamp"),
        "original_data": data,
        "is_anomaly": is_anomaly,
        "anomaly_score": score,
        "confidence": abs(score - 0.5),
        "metadata": {
            "algorithm": "isolation_forest",
            "processing_time_ms": (time.perf_counter() - t0) * 1e3,
        },
    }


def kafka_loop(brokers, topic, alerts, seconds, model):
    from confluent_kafka import Consumer, Producer

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "pynomaly-seed-detector",
                         "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": brokers})
    consumer.subscribe([topic])
    count = 0
    started = time.time()
    while time.time() - started < seconds:
        msg = consumer.poll(timeout=1.0)
        if msg is None or msg.error():
            continue
        t0 = time.perf_counter()
        data = json.loads(msg.value().decode("utf-8"))
        output = alert(model, data, t0)
        producer.produce(topic=alerts, key=str(data.get("id", "")), value=json.dumps(output))
        producer.poll(0)
        count += 1
    elapsed = time.time() - started
    producer.flush(10)
    consumer.close()
    print(f"seed loop (confluent-kafka + scikit-learn, per message): {count} events in {elapsed:.1f} s ({count / elapsed:.0f}/s)")


def main():
    url, stream, alerts, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    model = IsolationForest(n_estimators=100, random_state=0).fit(np.random.RandomState(0).rand(2000, 10))
    if url.startswith("kafka://"):
        kafka_loop(url[len("kafka://"):].rstrip("/"), stream, alerts, seconds, model)
        return
    import redis

    r = redis.Redis.from_url(url)
    try:
        r.xgroup_create(stream, "seed", id="0", mkstream=True)
    except redis.ResponseError:
        pass
    count = 0
    started = time.time()
    while time.time() - started < seconds:
        resp = r.xreadgroup("seed", "c1", {stream: ">"}, count=1, block=1000)
        for _, entries in resp or []:
            for entry_id, fields in entries:
                t0 = time.perf_counter()
                data = json.loads(fields[b"value"])
                output = alert(model, data, t0)
                r.xadd(alerts, {"key": str(data.get("id", "")), "value": json.dumps(output)})
                r.xack(stream, "seed", entry_id)
                count += 1
    elapsed = time.time() - started
    print(f"seed loop (redis-py + scikit-learn, per message): {count} events in {elapsed:.1f} s ({count / elapsed:.0f}/s)")


if __name__ == "__main__":
    main()
