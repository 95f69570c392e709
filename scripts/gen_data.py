#!/usr/bin/env python3
"""Deterministic benchmark inputs for scripts/bench.sh.

  gen_data.py dump --dir D --size-mb N [--seed S]
      Writes D/dump.v1.sql and D/dump.v2.sql in one pass: a mysqldump-like
      stream of about N MiB (CREATE TABLE + multi-row INSERT statements) and
      the same dump after ~2% of the rows changed: clusters of consecutive rows
      rewritten in place (same ids, new values) plus new rows appended at the
      end of every table, where mysqldump would emit them. Statements hold a
      fixed number of rows, so a changed row does not move later statement
      boundaries (real mysqldump cuts by bytes, see --help of bench.sh).
      Nothing is done if D/dump.state.json says the files are complete for
      the same size, seed and generator version.

  gen_data.py tree --dir D --size-mb N [--seed S] --version 1|2
      Makes D/tree hold version 1 (about N MiB: thousands of small files,
      some medium and a few large ones, text-like, random and mixed content,
      nested directories) or version 2 (~2% of the files modified in place,
      a few files added). Switching between versions rewrites only the files
      that differ; D/tree.state.json tracks the state, so an interrupted run
      is repaired on the next call.

Output is a function of (size, seed) only: Python's random.Random with the
same seed gives the same sequence on every platform and version in use
(Mersenne Twister; randbytes and choices need Python >= 3.9).
"""

import argparse
import itertools
import json
import os
import random
import shutil
import sys
import time

GEN_VERSION = 1  # bump when the output for a given (size, seed) changes
MiB = 1 << 20

# --------------------------------------------------------------------------
# shared vocabulary


def make_words(rng, n):
    """n distinct pronounceable pseudo-words, most frequent first."""
    onsets = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "cr", "dr", "fl", "gr", "pl", "pr", "sh", "sl", "sp", "st", "str", "th", "tr"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "ie", "oo", "ou", "y"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "nt", "rs", "st", "ck", "x"]
    seen, words = set(), []
    while len(words) < n:
        syl = 1 + min(rng.getrandbits(2), 2) + (1 if rng.random() < 0.15 else 0)
        w = "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(syl))
        if w not in seen:
            seen.add(w)
            words.append(w)
    words.sort(key=len)  # short words are the frequent ones, as in real text
    return words


def zipf_cum(n, s=1.05):
    return list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(n)))


class Vocab:
    def __init__(self, seed):
        rng = random.Random(f"vocab:{seed}")
        self.words = make_words(rng, 6000)
        self.cum = zipf_cum(len(self.words))
        self.first = [w.capitalize() for w in make_words(rng, 700)]
        self.last = [w.capitalize() for w in make_words(rng, 1500)]
        self.last += ["O\\'" + w for w in self.last[:40]]  # escaped quotes, as mysqldump writes them
        self.cities = [w.capitalize() for w in make_words(rng, 400)]
        self.domains = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "example.org", "mail.ru", "web.de",
                        "icloud.com", "proton.me", "gmx.net"] + [w + ".com" for w in make_words(rng, 150)]
        self.countries = ["US", "DE", "FR", "GB", "IT", "ES", "NL", "PL", "SE", "CA", "BR", "IN", "JP", "AU", "MX"]
        self.agents = [
            f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) {br}/{v}.0.{b}.{p} Safari/537.36"
            for os_, br, v, b, p in (
                (rng.choice(["Windows NT 10.0; Win64; x64", "X11; Linux x86_64", "Macintosh; Intel Mac OS X 10_15_7",
                             "Linux; Android 13; SM-S911B", "iPhone; CPU iPhone OS 17_2 like Mac OS X"]),
                 rng.choice(["Chrome", "Edg", "OPR", "Version"]), rng.randint(90, 124),
                 rng.randint(1000, 6400), rng.randint(10, 250)) for _ in range(300))]
        self.events = ["login", "logout", "page_view", "add_to_cart", "remove_from_cart", "checkout", "payment",
                       "search", "signup", "password_reset", "review", "refund_request", "wishlist_add", "share"]
        # phrases: 2-7 words, for fast text generation (one choice gives ~30 bytes)
        self.phrases = [" ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(2, 7)))
                        for _ in range(30000)]
        self.phrase_cum = zipf_cum(len(self.phrases), 0.6)

    def sentence_pool(self, rng, n):
        return [" ".join(rng.choices(self.words, cum_weights=self.cum, k=rng.randint(4, 18))) for _ in range(n)]


def fmt_dates(start_year=2018, years=7):
    """'YYYY-MM-DD' for every day from start_year, and 'HH:MM:SS' for every second of a day."""
    import datetime
    d0 = datetime.date(start_year, 1, 1)
    days = [(d0 + datetime.timedelta(days=i)).isoformat() for i in range(365 * years)]
    hms = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
    return days, hms


# --------------------------------------------------------------------------
# dump


HEADER = """-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
--
-- Host: db-primary.internal    Database: shop
-- ------------------------------------------------------
-- Server version\t8.0.36

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;
/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;
/*!50503 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;
/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;
"""

FOOTER = """/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;
/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;
/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;
/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;

-- Dump completed on 2025-11-20  2:30:01
"""

SCHEMAS = {
    "customers": """  `id` int unsigned NOT NULL AUTO_INCREMENT,
  `first_name` varchar(64) NOT NULL,
  `last_name` varchar(64) NOT NULL,
  `email` varchar(191) NOT NULL,
  `phone` varchar(32) DEFAULT NULL,
  `city` varchar(64) DEFAULT NULL,
  `country` char(2) NOT NULL,
  `password_hash` char(40) NOT NULL,
  `balance` decimal(12,2) NOT NULL DEFAULT '0.00',
  `status` tinyint NOT NULL DEFAULT '1',
  `created_at` datetime NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_email` (`email`),
  KEY `idx_country_city` (`country`,`city`)""",
    "products": """  `id` int unsigned NOT NULL AUTO_INCREMENT,
  `sku` varchar(32) NOT NULL,
  `name` varchar(255) NOT NULL,
  `description` text,
  `price` decimal(10,2) NOT NULL,
  `stock` int NOT NULL DEFAULT '0',
  `weight_kg` decimal(8,3) DEFAULT NULL,
  `updated_at` datetime NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `uk_sku` (`sku`)""",
    "orders": """  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `customer_id` int unsigned NOT NULL,
  `order_no` varchar(24) NOT NULL,
  `status` enum('new','paid','shipped','delivered','cancelled','refunded') NOT NULL,
  `total` decimal(12,2) NOT NULL,
  `tax` decimal(12,2) NOT NULL,
  `currency` char(3) NOT NULL,
  `items` smallint NOT NULL,
  `shipping_address` varchar(255) DEFAULT NULL,
  `note` varchar(255) DEFAULT NULL,
  `created_at` datetime NOT NULL,
  `updated_at` datetime NOT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_customer` (`customer_id`),
  KEY `idx_created` (`created_at`)""",
    "events": """  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `uuid` char(36) NOT NULL,
  `customer_id` int unsigned DEFAULT NULL,
  `type` varchar(32) NOT NULL,
  `ip` varchar(45) NOT NULL,
  `user_agent` varchar(255) DEFAULT NULL,
  `payload` json DEFAULT NULL,
  `created_at` datetime(3) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_type_created` (`type`,`created_at`)""",
}

# share of the dump's bytes per table, in dump order
TABLE_SHARES = [("customers", 0.22), ("products", 0.06), ("orders", 0.32), ("events", 0.40)]
STMT_BYTES = 256 * 1024  # target statement size; rows per statement are fixed per table


class Rows:
    """Batch row generators; every method returns SQL tuples '(...)' for the given ids."""

    def __init__(self, vocab):
        self.v = vocab
        self.days, self.hms = fmt_dates()
        self.ndays = len(self.days)
        self.span = {}  # table -> rows in v1, to spread dates over the range

    def day(self, table, i):
        return min(self.ndays - 2, i * (self.ndays - 2) // self.span.get(table, 1000))

    def ts(self, rng, day):
        return self.days[day] + " " + self.hms[rng.getrandbits(16) + rng.getrandbits(14) % 20864]

    def text(self, rng, lo, hi):
        v = self.v
        return " ".join(rng.choices(v.phrases, cum_weights=v.phrase_cum, k=rng.randint(lo, hi)))

    def customers(self, rng, ids):
        v, out = self.v, []
        first, last, dom, city, cc = v.first, v.last, v.domains, v.cities, v.countries
        for i in ids:
            f, l = rng.choice(first), rng.choice(last)
            sep = "._-"[rng.getrandbits(2) % 3]
            email = f"{f.lower()}{sep}{l.lower().replace(chr(92) + chr(39), '')}{rng.getrandbits(10)}@{rng.choice(dom)}"
            phone = "NULL" if rng.getrandbits(3) == 0 else f"'+{rng.randint(1, 99)} {rng.getrandbits(30) % 1000000000:09d}'"
            out.append("(%d,'%s','%s','%s',%s,'%s','%s','%040x',%d.%02d,%d,'%s')" % (
                i, f, l, email, phone, rng.choice(city), rng.choice(cc), rng.getrandbits(160),
                rng.getrandbits(17), rng.getrandbits(7) % 100, rng.getrandbits(3) % 5,
                self.ts(rng, self.day("customers", i))))
        return out

    def products(self, rng, ids):
        v, out = self.v, []
        for i in ids:
            name = " ".join(rng.choices(v.words, cum_weights=v.cum, k=rng.randint(2, 6))).title()
            out.append("(%d,'SKU-%05d-%s','%s','%s',%d.%02d,%d,%d.%03d,'%s')" % (
                i, i, "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=6)), name, self.text(rng, 8, 40),
                rng.getrandbits(11), rng.getrandbits(7) % 100, rng.getrandbits(12), rng.getrandbits(5),
                rng.getrandbits(10) % 1000, self.ts(rng, rng.getrandbits(11) % self.ndays)))
        return out

    def orders(self, rng, ids, ncust):
        v, out = self.v, []
        statuses = ["'delivered'"] * 6 + ["'shipped'", "'paid'", "'new'", "'cancelled'", "'refunded'", "'delivered'"]
        cur = ["'USD'", "'USD'", "'EUR'", "'EUR'", "'GBP'", "'PLN'", "'SEK'", "'CAD'"]
        for i in ids:
            day = self.day("orders", i)
            total = rng.getrandbits(18)
            addr = f"'{rng.randint(1, 999)} {rng.choice(v.words).capitalize()} St, {rng.choice(v.cities)} {rng.getrandbits(17) % 100000:05d}'"
            note = "NULL" if rng.getrandbits(2) else "'" + self.text(rng, 1, 3) + "'"
            out.append("(%d,%d,'SO-%d-%07d',%s,%d.%02d,%d.%02d,%s,%d,%s,%s,'%s','%s')" % (
                i, 1 + rng.getrandbits(24) % ncust, 2018 + day // 365, i % 10000000, statuses[rng.getrandbits(4) % 12],
                total // 100, total % 100, total // 500, rng.getrandbits(7) % 100, cur[rng.getrandbits(3)],
                1 + rng.getrandbits(3), addr, note, self.ts(rng, day), self.ts(rng, day + rng.getrandbits(1))))
        return out

    def events(self, rng, ids, ncust):
        v, out = self.v, []
        for i in ids:
            day = self.day("events", i)
            u = rng.getrandbits(128)
            uuid = "%08x-%04x-4%03x-%04x-%012x" % (u >> 96, (u >> 80) & 0xFFFF, (u >> 68) & 0xFFF,
                                                   0x8000 | ((u >> 52) & 0x3FFF), u & 0xFFFFFFFFFFFF)
            typ = v.events[min(rng.getrandbits(4), len(v.events) - 1)]
            ip = "%d.%d.%d.%d" % (rng.choice((10, 172, 192, 85, 31, 203)), rng.getrandbits(8), rng.getrandbits(8),
                                  rng.getrandbits(8))
            payload = ('{\\"page\\": \\"/%s/%s\\", \\"ref\\": \\"%s\\", \\"ms\\": %d, \\"q\\": \\"%s\\"}' % (
                rng.choice(v.words), rng.choice(v.words), rng.choice(v.domains), rng.getrandbits(12),
                self.text(rng, 1, 6)))
            out.append("(%d,'%s',%s,'%s','%s','%s','%s','%s.%03d')" % (
                i, uuid, "NULL" if rng.getrandbits(3) == 0 else str(1 + rng.getrandbits(24) % ncust), typ, ip,
                rng.choice(v.agents), payload, self.ts(rng, day), rng.getrandbits(10) % 1000))
        return out


def dump(args):
    d = args.dir
    os.makedirs(d, exist_ok=True)
    state_path = os.path.join(d, "dump.state.json")
    want = {"gen": GEN_VERSION, "seed": args.seed, "size_mb": args.size_mb, "clusters": args.clusters}
    v1, v2 = os.path.join(d, "dump.v1.sql"), os.path.join(d, "dump.v2.sql")
    try:
        with open(state_path) as f:
            st = json.load(f)
        if all(st.get(k) == want[k] for k in want) and st.get("complete") and \
                os.path.getsize(v1) == st["v1_bytes"] and os.path.getsize(v2) == st["v2_bytes"]:
            print(f"dump: reusing {v1} and {v2} ({st['v1_bytes'] / MiB:.0f} MiB)", file=sys.stderr)
            print(json.dumps(st))
            return
    except (OSError, ValueError, KeyError):
        pass
    if os.path.exists(state_path):
        os.remove(state_path)

    t0 = time.time()
    total = args.size_mb * MiB
    vocab = Vocab(args.seed)
    gen = Rows(vocab)
    rng = random.Random(f"dump:{args.seed}")        # v1 content
    mrng = random.Random(f"dump-mod:{args.seed}")   # changes for v2; never touches rng
    # estimate row sizes with a throwaway generator, to plan statement sizes and change clusters
    est = random.Random(f"dump-est:{args.seed}")
    sample = {
        "customers": gen.customers(est, range(1, 201)),
        "products": gen.products(est, range(1, 201)),
        "orders": gen.orders(est, range(1, 201), 1000),
        "events": gen.events(est, range(1, 201), 1000),
    }
    avg = {t: sum(map(len, r)) / len(r) + 1 for t, r in sample.items()}
    rows_total = {t: max(1, int(total * share / avg[t])) for t, share in TABLE_SHARES}
    ncust = rows_total["customers"]
    gen.span = rows_total

    def batch(r, table, ids):
        if table in ("orders", "events"):
            return getattr(gen, table)(r, ids, ncust)
        return getattr(gen, table)(r, ids)

    # v2 changes: ~1.6% of rows rewritten in clusters, ~0.4% of rows appended per table
    clusters_total = args.clusters if args.clusters else max(4, args.size_mb // 8)
    mod_frac, app_frac = 0.016, 0.004
    stats = {"rows_v1": 0, "rows_changed": 0, "rows_appended": 0, "row_clusters": 0}
    tmp1, tmp2 = v1 + ".tmp", v2 + ".tmp"
    with open(tmp1, "wb", buffering=4 * MiB) as f1, open(tmp2, "wb", buffering=4 * MiB) as f2:
        def both(s):
            b = s.encode()
            f1.write(b)
            f2.write(b)

        both(HEADER)
        for table, share in TABLE_SHARES:
            n = rows_total[table]
            per_stmt = max(1, int(STMT_BYTES / avg[table]))
            nclusters = max(1, round(clusters_total * share))
            clen = max(1, round(n * mod_frac / nclusters))
            # cluster starts: evenly random over the table, not overlapping
            starts = sorted(mrng.sample(range(1, max(2, n - clen)), min(nclusters, max(1, n - clen - 1))))
            changed = set()
            for s in starts:
                changed.update(range(s, s + clen))
            stats["row_clusters"] += len(starts)
            both(f"\n--\n-- Table structure for table `{table}`\n--\n\nDROP TABLE IF EXISTS `{table}`;\n"
                 f"/*!40101 SET @saved_cs_client     = @@character_set_client */;\n/*!50503 SET character_set_client = utf8mb4 */;\n"
                 f"CREATE TABLE `{table}` (\n{SCHEMAS[table]}\n) ENGINE=InnoDB AUTO_INCREMENT={n + 1} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n"
                 f"/*!40101 SET character_set_client = @saved_cs_client */;\n\n--\n-- Dumping data for table `{table}`\n--\n\n"
                 f"LOCK TABLES `{table}` WRITE;\n/*!40000 ALTER TABLE `{table}` DISABLE KEYS */;\n")
            prefix = f"INSERT INTO `{table}` VALUES "
            for lo in range(1, n + 1, per_stmt):
                ids = range(lo, min(n, lo + per_stmt - 1) + 1)
                rows = batch(rng, table, ids)
                line = (prefix + ",".join(rows) + ";\n").encode()
                f1.write(line)
                hit = [k for k, i in enumerate(ids) if i in changed]
                if hit:
                    new = batch(mrng, table, [ids[k] for k in hit])
                    for k, r in zip(hit, new):
                        rows[k] = r
                    stats["rows_changed"] += len(hit)
                    line = (prefix + ",".join(rows) + ";\n").encode()
                f2.write(line)
            stats["rows_v1"] += n
            extra = max(1, round(n * app_frac))
            stats["rows_appended"] += extra
            for lo in range(n + 1, n + extra + 1, per_stmt):
                ids = range(lo, min(n + extra, lo + per_stmt - 1) + 1)
                f2.write((prefix + ",".join(batch(mrng, table, ids)) + ";\n").encode())
            both(f"/*!40000 ALTER TABLE `{table}` ENABLE KEYS */;\nUNLOCK TABLES;\n")
        both(FOOTER)
    os.replace(tmp1, v1)
    os.replace(tmp2, v2)
    st = dict(want, complete=True, v1_bytes=os.path.getsize(v1), v2_bytes=os.path.getsize(v2), **stats)
    with open(state_path, "w") as f:
        json.dump(st, f)
    print(f"dump: wrote {v1} ({st['v1_bytes'] / MiB:.1f} MiB) and {v2} in {time.time() - t0:.1f} s; "
          f"v2: {stats['rows_changed']} of {stats['rows_v1']} rows changed in {stats['row_clusters']} clusters, "
          f"{stats['rows_appended']} rows appended", file=sys.stderr)
    print(json.dumps(st))


# --------------------------------------------------------------------------
# tree

TEXT_EXT = [".txt", ".log", ".md", ".py", ".c", ".h", ".js", ".csv", ".json", ".xml", ".html", ".conf"]
RAND_EXT = [".jpg", ".png", ".gz", ".zip", ".mp4", ".bin", ".zst", ".enc"]
MIXED_EXT = [".db", ".dat", ".pdf", ".docx", ".sqlite", ".img", ".o", ".so"]
BLOCK = 1 * MiB


def plan_tree(size_mb, seed):
    """The deterministic list of files: dict(path, size, kind, idx) for v1, the modified set and added files."""
    rng = random.Random(f"tree-plan:{seed}")
    names = make_words(random.Random(f"tree-names:{seed}"), 800)
    total = size_mb * MiB
    scale = min(1.0, size_mb / 1024)

    # directories: a few top-level areas, nested 1-4 deep
    tops = ["home", "srv", "var/lib", "opt", "projects", "media", "backup-staging"]
    dirs = []
    nd = max(12, int(size_mb * 0.45))  # ~460 dirs per GiB
    for _ in range(nd):
        depth = rng.randint(1, 4)
        parts = [rng.choice(tops)] + [rng.choice(names) + (f"_{rng.randint(1, 40)}" if rng.random() < 0.3 else "")
                                      for _ in range(depth)]
        dirs.append("/".join(parts))
    dirs = sorted(set(dirs))

    files = []

    def add(size, group):
        r = rng.random()
        if group == "small":
            kind = "text" if r < 0.6 else "random" if r < 0.85 else "mixed"
        elif group == "medium":
            kind = "text" if r < 0.3 else "random" if r < 0.7 else "mixed"
        else:
            kind = "text" if r < 0.2 else "random" if r < 0.6 else "mixed"
        ext = rng.choice({"text": TEXT_EXT, "random": RAND_EXT, "mixed": MIXED_EXT}[kind])
        path = f"{rng.choice(dirs)}/{rng.choice(names)}-{len(files)}{ext}"
        files.append({"path": path, "size": size, "kind": kind, "idx": len(files)})

    budgets = {"large": 0.45 * total, "medium": 0.37 * total, "small": 0.18 * total}
    ranges = {"large": (int(20 * MiB * scale), int(100 * MiB * scale)), "medium": (100 * 1024, 5 * MiB),
              "small": (1024, 64 * 1024)}
    for group in ("large", "medium", "small"):
        lo, hi = ranges[group]
        used = 0
        while used < budgets[group]:
            if group == "large":
                size = rng.randint(lo, hi)
            else:  # log-uniform: many more small ones than big ones
                size = int(lo * (hi / lo) ** rng.random())
            size = min(size, int(budgets[group] - used) + lo)
            add(size, group)
            used += size
    rng.shuffle(files)  # creation order unrelated to size

    # v2: ~2% of files modified (at least one large and one medium), a few added
    nmod = max(3, round(len(files) * 0.02))
    by_size = sorted(files, key=lambda f: -f["size"])
    nlarge = sum(1 for f in files if f["size"] >= ranges["large"][0])
    mod = set()
    if nlarge:
        mod.add(by_size[rng.randrange(nlarge)]["idx"])
    mediums = [f["idx"] for f in files if ranges["medium"][0] <= f["size"] < ranges["large"][0]]
    if mediums:
        mod.add(rng.choice(mediums))
    others = [f["idx"] for f in files if f["idx"] not in mod]
    mod.update(rng.sample(others, max(0, nmod - len(mod))))
    added = []
    for k in range(max(3, len(files) // 500)):
        size = int(2048 * (2 * MiB / 2048) ** rng.random())
        kind = rng.choice(["text", "text", "random", "mixed"])
        ext = rng.choice({"text": TEXT_EXT, "random": RAND_EXT, "mixed": MIXED_EXT}[kind])
        added.append({"path": f"{rng.choice(dirs)}/new-{rng.choice(names)}-{k}{ext}", "size": size, "kind": kind,
                      "idx": 1_000_000 + k})
    return files, mod, added


class Content:
    """Per-file content, generated in blocks from a per-file seed."""

    def __init__(self, seed):
        self.seed = seed
        self.v = Vocab(seed)
        self.days, self.hms = fmt_dates()

    def text_block(self, rng, n):
        v, out, size = self.v, [], 0
        style = rng.getrandbits(2)
        while size < n:
            if style == 0:  # log lines
                line = "%s %s %s [%s] %s id=%d dur=%dms\n" % (
                    self.days[rng.getrandbits(11)], self.hms[rng.getrandbits(16)],
                    ("INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR")[rng.getrandbits(8) % 6],
                    rng.choice(v.words), " ".join(rng.choices(v.phrases, cum_weights=v.phrase_cum, k=rng.randint(1, 4))),
                    rng.getrandbits(32), rng.getrandbits(12))
            elif style == 1:  # csv
                line = "%d,%s,%s,%d.%02d,%s\n" % (rng.getrandbits(24), rng.choice(v.words), rng.choice(v.words),
                                                  rng.getrandbits(14), rng.getrandbits(7) % 100,
                                                  rng.choice(v.phrases))
            else:  # prose / code-ish
                line = " ".join(rng.choices(v.phrases, cum_weights=v.phrase_cum, k=rng.randint(2, 5))) + (
                    ".\n" if rng.getrandbits(1) else ";\n    ")
            out.append(line)
            size += len(line)
        return "".join(out).encode()[:n]

    def block(self, rng, kind, n):
        if kind == "random":
            return rng.randbytes(n)
        if kind == "text":
            return self.text_block(rng, n)
        # mixed: 4 KiB pages, some random, some sparse, some text (db / document-like)
        out, size = [], 0
        while size < n:
            m = min(4096, n - size)
            r = rng.getrandbits(2)
            if r == 0:
                page = rng.randbytes(m)
            elif r == 1:
                page = (rng.randbytes(64) + bytes(m))[:m]
            else:
                page = self.text_block(rng, m)
            out.append(page)
            size += m
        return b"".join(out)

    def patches(self, f):
        """v2 edits of a file: list of (offset, length) regions rewritten, and bytes appended."""
        rng = random.Random(f"tree-patch:{self.seed}:{f['idx']}")
        size = f["size"]
        if size <= 64 * 1024:  # small file: a region rewritten, sometimes text appended
            lo = rng.randrange(size)
            return [(lo, min(size - lo, rng.randint(64, 8192)))], rng.choice([0, 0, rng.randint(100, 4096)])
        # medium / large: a few regions rewritten in place (db page updates), sometimes appended to
        regs = sorted((rng.randrange(size), rng.randint(4096, 128 * 1024)) for _ in range(rng.randint(1, 4)))
        return [(o, min(ln, size - o)) for o, ln in regs], rng.choice([0, 0, 0, rng.randint(4096, 512 * 1024)])

    def write(self, root, f, version):
        path = os.path.join(root, f["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = random.Random(f"tree-file:{self.seed}:{f['idx']}")
        patches, append = self.patches(f) if version == 2 else ([], 0)
        mrng = random.Random(f"tree-mod:{self.seed}:{f['idx']}")
        with open(path, "wb") as out:
            off = 0
            while off < f["size"]:
                n = min(BLOCK, f["size"] - off)
                b = self.block(rng, f["kind"], n)
                for po, pl in patches:
                    s, e = max(po, off), min(po + pl, off + n)
                    if s < e:
                        b = b[:s - off] + self.block(mrng, f["kind"], e - s) + b[e - off:]
                out.write(b)
                off += n
            if append:
                out.write(self.block(mrng, f["kind"], append))
        return f["size"] + append


def tree(args):
    root = os.path.join(args.dir, "tree")
    state_path = os.path.join(args.dir, "tree.state.json")
    want = {"gen": GEN_VERSION, "seed": args.seed, "size_mb": args.size_mb}
    try:
        with open(state_path) as f:
            st = json.load(f)
        if not all(st.get(k) == want[k] for k in want):
            st = None
    except (OSError, ValueError):
        st = None
    t0 = time.time()
    files, mod, added = plan_tree(args.size_mb, args.seed)
    content = Content(args.seed)
    info = dict(want, files_v1=len(files), files_modified=len(mod), files_added=len(added),
                bytes_v1=sum(f["size"] for f in files))

    def save(version):
        with open(state_path + ".tmp", "w") as f:
            json.dump(dict(want, version=version), f)
        os.replace(state_path + ".tmp", state_path)

    if st is None or st.get("version") not in (1, 2, "dirty") or not os.path.isdir(root):
        # full generation
        if os.path.exists(state_path):
            os.remove(state_path)
        if os.path.exists(root):
            shutil.rmtree(root)
        print(f"tree: generating {len(files)} files, {info['bytes_v1'] / MiB:.0f} MiB in {root} ...", file=sys.stderr)
        for f in files:
            content.write(root, f, 1)
        save(1)
        st = {"version": 1}
        print(f"tree: generated in {time.time() - t0:.1f} s", file=sys.stderr)
    if st["version"] == args.version:
        print(f"tree: {root} is at version {args.version}", file=sys.stderr)
    else:
        # rewrite only the files that differ between versions ("dirty": a switch was interrupted)
        save("dirty")
        changed = 0
        for f in files:
            if f["idx"] in mod:
                changed += content.write(root, f, args.version)
        for f in added:
            p = os.path.join(root, f["path"])
            if args.version == 2:
                changed += content.write(root, f, 2)
            elif os.path.exists(p):
                os.remove(p)
        save(args.version)
        print(f"tree: switched {root} to version {args.version}: {len(mod)} files rewritten, {len(added)} files "
              f"{'added' if args.version == 2 else 'removed'} ({changed / MiB:.1f} MiB written) in "
              f"{time.time() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(dict(info, version=args.version)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("dump", "tree"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.add_argument("--size-mb", type=int, required=True)
        p.add_argument("--seed", type=int, default=42)
        if name == "dump":
            p.add_argument("--clusters", type=int, default=0,
                           help="number of changed-row clusters in v2 (default: size-mb / 8)")
        if name == "tree":
            p.add_argument("--version", type=int, choices=(1, 2), required=True)
    args = ap.parse_args()
    if args.size_mb < 4:
        ap.error("--size-mb must be at least 4")
    {"dump": dump, "tree": tree}[args.cmd](args)


if __name__ == "__main__":
    main()
