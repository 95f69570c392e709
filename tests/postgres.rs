//! PostgreSQL source and target against real private PostgreSQL servers
//! (tests/common/postgres.rs; installed by scripts/setup.sh).

mod common;

use common::postgres::Postgres;
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn fresh_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed))
}

fn run_db(repo: &Repo, pg: &Postgres, args: &[&str]) -> Out {
    let mut c = repo.cmd(args);
    c.env("PGPASSWORD", &pg.password);
    run_with_input(c, None)
}

fn show(repo: &Repo, spec: &str) -> Value {
    repo.run(["--json", "show", spec]).ok().json()
}

const TABLES: [&str; 4] = ["public.customers", "public.orders", "billing.invoices", "public.empty_one"];

fn create_shop(pg: &Postgres, name: &str, owner: &str) {
    pg.sql(None, &format!("CREATE DATABASE {name}"));
    pg.sql(
        Some(name),
        &format!(
            r#"
CREATE EXTENSION pgcrypto;
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text, photo bytea, tags text[], profile jsonb, balance numeric(12,2));
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), amount numeric(10,2), placed timestamptz DEFAULT '2026-01-01T00:00:00Z', doc oid);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (no int PRIMARY KEY DEFAULT nextval('invoice_no'), order_id bigint, digest text);
CREATE TABLE empty_one (x int);
INSERT INTO customers (name, note, photo, tags, profile, balance) VALUES
  ('Zoë ''quoted'' \ back', E'multi\nline', '\x00ff275c0d0a', '{{a,"b c"}}', '{{"k": [1, null, "😀"]}}', 10.50),
  ('😀 emoji 漢字', NULL, NULL, NULL, NULL, NULL),
  ('semi;colon', '', '', '{{}}', 'null', -3.25);
INSERT INTO customers (name, note, photo, balance) SELECT 'customer ' || g, repeat('n', g % 50), decode(md5(g::text), 'hex'), g / 7.0 FROM generate_series(1, 2000) g;
INSERT INTO orders (customer_id, amount, doc) SELECT 1 + g % 2000, g * 1.25, NULL FROM generate_series(1, 5000) g;
UPDATE orders SET doc = lo_from_bytea(0, convert_to('large object of order ' || id, 'UTF8')) WHERE id <= 3;
INSERT INTO billing.invoices (order_id, digest) SELECT g, encode(digest(g::text, 'sha256'), 'hex') FROM generate_series(1, 300) g;
CREATE VIEW big_spenders AS SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id HAVING sum(amount) > 1000;
CREATE MATERIALIZED VIEW order_stats AS SELECT count(*) AS n, sum(amount) AS total FROM orders;
CREATE FUNCTION order_total(cid int) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = cid $$;
CREATE TABLE audit (id serial PRIMARY KEY, msg text);
CREATE FUNCTION audit_order() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (msg) VALUES ('order ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION audit_order();
ALTER TABLE customers OWNER TO {owner};
"#
        ),
    );
}

fn fingerprint(pg: &Postgres, name: &str) -> Vec<String> {
    let mut f: Vec<String> = TABLES.iter().map(|t| format!("{t}: {}", pg.checksum(name, t))).collect();
    f.push(pg.sql(Some(name), "SELECT count(*), sum(total) FROM big_spenders"));
    f.push(pg.sql(Some(name), "SELECT n, total FROM order_stats"));
    f.push(pg.sql(Some(name), "SELECT order_total(1), order_total(2)"));
    f.push(pg.sql(Some(name), "SELECT last_value, is_called FROM invoice_no"));
    f.push(pg.sql(Some(name), "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension"));
    f.push(pg.sql(
        Some(name),
        "SELECT string_agg(convert_from(lo_get(doc), 'UTF8'), ',' ORDER BY id) FROM orders WHERE doc IS NOT NULL",
    ));
    f.push(pg.sql(Some(name), "SELECT count(*) FROM pg_largeobject_metadata"));
    f.push(pg.sql(Some(name), "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"));
    f.push(pg.sql(Some(name), "SELECT tableowner FROM pg_tables WHERE tablename = 'customers'"));
    f
}

#[test]
fn database_round_trips_under_its_own_name_and_a_new_one() {
    let Some(pg) = Postgres::shared() else { return };
    let name = fresh_db("shop");
    let _ = pg.try_sql(None, "CREATE ROLE shop_owner");
    create_shop(pg, &name, "shop_owner");
    let original = fingerprint(pg, &name);
    let repo = Repo::init();
    let out = run_db(&repo, pg, &["--json", "backup", "--source", &pg.url(&name)]).ok().json();
    let id = out["snapshot_id"].as_str().unwrap().to_string();

    let m = show(&repo, &id);
    let d = &m["source"]["details"];
    assert_eq!(m["source"]["kind"], "postgres");
    assert!(d["server_version"].as_str().unwrap().starts_with(char::is_numeric), "{d}");
    assert!(d["dump_tool_version"].as_str().unwrap().starts_with("pg_dump (PostgreSQL)"), "{d}");
    assert_eq!(d["databases"][&name]["encoding"], "UTF8");
    let names: Vec<&str> = m["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["globals.sql".to_string(), format!("{name}.pgdump")]);
    let facts = &d["streams"][1]["facts"];
    assert!(facts["wal_lsn"].as_str().unwrap().contains('/'), "{facts}");
    let counts = &m["fingerprints"]["counts"];
    for t in TABLES {
        let n: u64 = pg.sql(Some(&name), &format!("SELECT count(*) FROM {t}")).parse().unwrap();
        assert_eq!(counts[format!("{name}.{t}")], n, "row count of {t} in {counts}");
    }
    assert_eq!(counts[format!("{name}.public.customers")], 2003);
    assert_eq!(counts[format!("{name}.<large objects>")], 3);

    let copy = format!("{name}_copy");
    run_db(&repo, pg, &["restore", &id, "--to", &pg.url(&name), "--rename", &copy, "--yes"]).ok();
    assert_eq!(fingerprint(pg, &copy), original, "restored copy differs");
    assert_eq!(fingerprint(pg, &name), original, "the original changed");
    pg.sql(Some(&copy), "INSERT INTO orders (customer_id, amount) VALUES (1, 1)");
    assert_eq!(pg.sql(Some(&copy), "SELECT count(*) FROM audit"), "1");

    pg.sql(None, &format!("DROP DATABASE {name}"));
    run_db(&repo, pg, &["restore", "latest", "--to", &pg.url(""), "--yes"]).ok();
    assert_eq!(fingerprint(pg, &name), original, "restored database differs from the original");
}

#[test]
fn roles_come_back_on_a_new_server_with_globals() {
    let Some(src) = Postgres::shared() else { return };
    let Some(dst) = Postgres::start() else { return };
    let name = fresh_db("moved");
    let _ = src.try_sql(None, "CREATE ROLE app_owner LOGIN PASSWORD 'app-pass'");
    create_shop(src, &name, "app_owner");
    let original = fingerprint(src, &name);
    let repo = Repo::init();
    run_db(&repo, src, &["backup", "--source", &src.url(&name)]).ok();
    // The new server lacks the owner role: pg_restore stops with a clear error, and the
    // half-restored database it created is removed again.
    let out = run_db(&repo, &dst, &["restore", "latest", "--to", &dst.url(""), "--yes"]).expect_code(7);
    assert!(out.stderr.contains("app_owner") && out.stderr.contains("pg_restore"), "{}", out.stderr);
    assert_eq!(dst.sql(None, &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")), "0");
    // With the globals the roles come first, and the database restores completely.
    run_db(&repo, &dst, &["restore", "latest", "--to", &dst.url(""), "--with-globals", "--yes"]).ok();
    assert_eq!(fingerprint(&dst, &name), original);
    assert_eq!(dst.sql(None, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_owner'"), "t");
}

#[test]
fn an_existing_database_is_never_overwritten_without_clean() {
    let Some(pg) = Postgres::shared() else { return };
    let name = fresh_db("keep");
    let _ = pg.try_sql(None, "CREATE ROLE shop_owner");
    create_shop(pg, &name, "shop_owner");
    let original = fingerprint(pg, &name);
    let repo = Repo::init();
    run_db(&repo, pg, &["backup", "--source", &pg.url(&name)]).ok();
    pg.sql(Some(&name), "DELETE FROM billing.invoices WHERE no % 2 = 0; INSERT INTO empty_one VALUES (1)");
    let changed = fingerprint(pg, &name);
    let out = run_db(&repo, pg, &["restore", "latest", "--to", &pg.url(&name), "--yes"]).expect_code(6);
    assert!(out.stderr.contains("--clean"), "{}", out.stderr);
    assert_eq!(fingerprint(pg, &name), changed, "a refused restore changed the database");
    run_db(&repo, pg, &["restore", "latest", "--to", &pg.url(&name), "--clean", "--yes"]).ok();
    assert_eq!(pg.sql(Some(&name), "SELECT count(*) FROM billing.invoices"), "300");
    assert_eq!(pg.sql(Some(&name), "SELECT count(*) FROM empty_one"), "0");
    assert_eq!(fingerprint(pg, &name), original, "--clean did not reproduce the snapshot");
}

#[test]
fn wrong_password_fails_clearly_and_writes_nothing() {
    let Some(pg) = Postgres::shared() else { return };
    let repo = Repo::init();
    let mut c = repo.cmd(["backup", "--source", &pg.url("postgres")]);
    c.env("PGPASSWORD", "wrong-password");
    let out = run_with_input(c, None).expect_code(5);
    assert!(out.stderr.contains("password authentication failed"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("127.0.0.1:{}", pg.port)) && !out.stderr.contains("wrong-password"),
        "{}",
        out.stderr
    );
    let out = run_db(&repo, pg, &["backup", "--source", &pg.url("no_such_db")]).expect_code(5);
    assert!(out.stderr.contains("no_such_db"), "{}", out.stderr);
    assert!(repo.snapshots().is_empty());
}

#[test]
fn server_killed_during_the_dump_leaves_no_snapshot() {
    let Some(pg) = Postgres::start() else { return };
    pg.sql(None, "CREATE DATABASE big");
    pg.sql(Some("big"), "CREATE TABLE t (id int PRIMARY KEY, pad text); INSERT INTO t SELECT g, repeat(md5(g::text), 7) FROM generate_series(1, 600000) g");
    let repo = Repo::init();
    let mut cmd = repo.cmd(["backup", "--source", &pg.url("big")]);
    cmd.env("PGPASSWORD", &pg.password).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let dumping = wait_until(Duration::from_secs(30), || {
        children_of(child.id())
            .iter()
            // The database dump itself (not pg_dumpall's globals before it).
            .any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--format=custom"))
            })
    });
    assert!(dumping, "pg_dump never started");
    std::thread::sleep(Duration::from_millis(150));
    pg.kill();
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(5), "stderr: {stderr}");
    assert!(stderr.contains("database \"big\""), "{stderr}");
    assert!(repo.snapshots().is_empty(), "a failed dump became a snapshot");
}

#[test]
fn nightly_dumps_with_two_percent_of_rows_changed_store_little() {
    let Some(pg) = Postgres::shared() else { return };
    let name = fresh_db("nightly");
    pg.sql(None, &format!("CREATE DATABASE {name}"));
    pg.sql(
        Some(&name),
        "CREATE TABLE orders (id serial PRIMARY KEY, customer text, amount numeric(10,2), status text, note text); \
         INSERT INTO orders (customer, amount, status, note) SELECT 'customer-' || g % 9973, g * 0.37, 'shipped', \
         'order note ' || md5(g::text) || ' ' || md5((g * 7)::text) || ' ' || md5((g * 13)::text) FROM generate_series(1, 400000) g",
    );
    let repo = Repo::init();
    let first = run_db(&repo, pg, &["--json", "backup", "--source", &pg.url(&name)]).ok().json();
    // 1% new orders, 1% of orders (the recent ones) change status. PostgreSQL
    // writes updated rows to new places in the heap, so they move to the end of the COPY.
    pg.sql(
        Some(&name),
        "INSERT INTO orders (customer, amount, status, note) SELECT 'customer-' || g, g, 'new', 'new order ' || md5(g::text) \
         FROM generate_series(1, 4000) g; UPDATE orders SET status = 'delivered' WHERE id BETWEEN 396001 AND 400000",
    );
    let second = run_db(&repo, pg, &["--json", "backup", "--source", &pg.url(&name)]).ok().json();
    let (s1, s2) =
        (first["summary"]["bytes_stored"].as_u64().unwrap(), second["summary"]["bytes_stored"].as_u64().unwrap());
    let read = second["summary"]["bytes_read"].as_u64().unwrap();
    eprintln!(
        "nightly postgres: dump {read} B, first stored {s1} B, second stored {s2} B ({:.1}%)",
        100.0 * s2 as f64 / s1 as f64
    );
    assert!(read > 60_000_000, "dump smaller than planned: {read}");
    assert!(s2 * 10 < s1, "second dump stored {s2} B, not under 10% of the first's {s1} B");
}
