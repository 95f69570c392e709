#!/usr/bin/env python3
"""Print a deterministic mysqldump-like SQL stream with N rows (demo and tests)."""
import random
import sys

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
rnd = random.Random(42)
out = sys.stdout
out.write("-- MariaDB dump (drtool sample)\nCREATE TABLE `customers` (\n  `id` int NOT NULL,\n"
          "  `name` varchar(64), `email` varchar(128), `balance` decimal(10,2), `created` datetime,\n"
          "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n")
first = ["anna", "ben", "chloé", "dmitri", "eva", "farid", "grace", "hiro", "ines", "jonas"]
batch = []
for i in range(1, rows + 1):
    name = f"{rnd.choice(first)} {rnd.choice(first).title()}son"
    batch.append(f"({i},'{name}','{name.split()[0]}{i}@example.com',{rnd.randint(0, 99999) / 100:.2f},"
                 f"'2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} {rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00')")
    if len(batch) == 100:
        out.write("INSERT INTO `customers` VALUES " + ",".join(batch) + ";\n")
        batch = []
if batch:
    out.write("INSERT INTO `customers` VALUES " + ",".join(batch) + ";\n")
