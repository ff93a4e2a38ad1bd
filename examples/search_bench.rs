//! Message search on the SQLite store: what the FTS5 index costs writers, how long the
//! start-up migration takes to build it, and query latency at a million messages.
//!
//! ```text
//! cargo run --release --example search_bench -- [--messages 1000000] [--measure 200000] [--queries 300]
//! ```
//! 1. Stores `messages - measure` messages with index writes made no-ops (the index table is
//!    swapped for a view that ignores inserts), timing the last `measure` of them: writes/s
//!    before the index.
//! 2. Reopens the database as one from before the index (schema version 1): the store's own
//!    migration builds the index from every message; timed.
//! 3. Stores `measure` more through the normal write path, index included: writes/s after.
//! 4. Runs `queries` one-word and two-word searches (one company, a page of 20) through the
//!    store and reports p50/p99.
//!
//! Every message goes through `Store::insert_message` with 64 writers in flight, so the writer
//! thread batches them as it does under load. Content is drawn from a 250-word vocabulary
//! with Zipf frequencies, 5 to 25 words a message, over 5 companies of 200 conversations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_service::domain::time::from_millis;
use chat_service::domain::{
    new_object_id, Channel, Conversation, Message, MessageSearch, MessageType, Role, SearchQuery, SenderType, Status,
};
use chat_service::store::sqlite::SqliteStore;
use chat_service::store::Store;
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Map;

const COMPANIES: usize = 5;
const CONVERSATIONS_PER_COMPANY: usize = 200;
const WRITERS: usize = 64;

const VOCABULARY: &str = "the to and a i you it of is that in for my on have this be with not can your we do \
are me but was so what just at if order please help account can't like get know will one all there about \
thanks no out up from time when how an they would then now payment here card any refund see or has hi \
back need our by had did want more us some been which delivery could them new hello great invoice problem \
still yes today email password login error tomorrow price plan subscription update issue shipping address \
phone number support team ticket cancel change working check sorry message sent received yesterday week \
month billing charge charged twice money return item product package tracking late arrived missing damaged \
replacement exchange size color available stock discount code coupon apply cart checkout website app mobile \
download install version bug crash screen button click page link reset verify confirm confirmation receipt \
transfer bank credit debit balance fee free trial upgrade downgrade renew expire expired contract agent \
manager call callback schedule appointment meeting calendar morning afternoon evening weekend holiday \
office store location open closed hours wait waiting minutes seconds quick fast slow soon asap urgent \
important question answer information details name customer service experience feedback review rating \
happy unhappy disappointed frustrated excellent perfect wrong right fine okay good bad better worse best \
understand explain clear sure maybe probably definitely really very much many few several every";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

struct Corpus {
    words: Vec<&'static str>,
    zipf: WeightedIndex<f64>,
}

impl Corpus {
    fn new() -> Self {
        let words: Vec<&str> = VOCABULARY.split_whitespace().collect();
        let zipf = WeightedIndex::new((0..words.len()).map(|r| 1.0 / (r as f64 + 1.0))).unwrap();
        Corpus { words, zipf }
    }

    fn content(&self, rng: &mut StdRng) -> String {
        let n = rng.random_range(5..=25);
        (0..n).map(|_| self.words[self.zipf.sample(rng)]).collect::<Vec<_>>().join(" ")
    }
}

fn conversation(company: usize) -> Conversation {
    let t = from_millis(1_700_000_000_000);
    Conversation {
        id: new_object_id(),
        agent_id: "agent".into(),
        company_id: format!("company-{company}"),
        contact_id: None,
        user_id: Some("u".into()),
        participants: vec!["u".into()],
        title: Some("Support".into()),
        channel: Channel::Chat,
        status: Status::Active,
        started_at: t,
        ended_at: None,
        tags: Vec::new(),
        metadata: Map::new(),
        threads: Vec::new(),
        summary: None,
        created_at: t,
        updated_at: t,
    }
}

/// Stores `count` messages through the store with `WRITERS` in flight; returns the seconds.
async fn store_messages(store: &Arc<SqliteStore>, corpus: &Arc<Corpus>, conversations: &Arc<Vec<String>>, first: usize, count: usize) -> f64 {
    // Contents are made beforehand so only storing is timed.
    let mut rng = StdRng::seed_from_u64(first as u64);
    let messages: Arc<Vec<Message>> = Arc::new(
        (first..first + count)
            .map(|i| Message {
                id: new_object_id(),
                conversation_id: conversations[rng.random_range(0..conversations.len())].clone(),
                thread_id: None,
                sender_type: SenderType::User,
                sender_id: "u".into(),
                role: Role::User,
                content: corpus.content(&mut rng),
                message_type: MessageType::Text,
                attachments: Vec::new(),
                ai_metadata: None,
                metadata: Map::new(),
                created_at: from_millis(1_700_000_000_000 + i as i64),
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, messages, next) = (store.clone(), messages.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = messages.get(i) else { break };
                    store.insert_message(m).await.expect("stored");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn reopen(dir: &std::path::Path, before: impl FnOnce(&rusqlite::Connection)) -> Arc<SqliteStore> {
    // The previous store's writer thread closes its connection once its queue is dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conn = rusqlite::Connection::open(dir.join("chat.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    before(&conn);
    drop(conn);
    Arc::new(SqliteStore::open(dir).unwrap())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let total = arg("--messages", 1_000_000);
    let measure = arg("--measure", 200_000).min(total / 2);
    let queries = arg("--queries", 300);
    let dir = tempfile::tempdir().unwrap();
    let corpus = Arc::new(Corpus::new());

    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut conversations = Vec::new();
    for company in 0..COMPANIES {
        for _ in 0..CONVERSATIONS_PER_COMPANY {
            let c = conversation(company);
            store.insert_conversation(&c).await.unwrap();
            conversations.push(c.id);
        }
    }
    let conversations = Arc::new(conversations);
    drop(store);

    // 1. Without the index: its table becomes a view whose inserts do nothing.
    let store = reopen(dir.path(), |c| {
        c.execute_batch(
            "DROP TABLE messages_fts; CREATE VIEW messages_fts (rowid, text) AS SELECT 0, ''; \
             CREATE TRIGGER messages_fts_off INSTEAD OF INSERT ON messages_fts BEGIN SELECT 1; END;",
        )
        .unwrap();
    })
    .await;
    let unindexed = total - measure;
    let fill = store_messages(&store, &corpus, &conversations, 0, unindexed - measure).await;
    println!("filled {} messages without the index in {fill:.1} s", unindexed - measure);
    let secs = store_messages(&store, &corpus, &conversations, unindexed - measure, measure).await;
    let before = measure as f64 / secs;
    println!("writes without the index: {before:.0} messages/s ({measure} messages, {} → {unindexed} stored)", unindexed - measure);
    drop(store);

    // 2. The start-up migration builds the index.
    let started = Instant::now();
    let store = reopen(dir.path(), |c| {
        c.execute_batch("DROP TRIGGER messages_fts_off; DROP VIEW messages_fts; PRAGMA user_version = 1;").unwrap();
    })
    .await;
    println!("migration built the index for {unindexed} messages in {:.1} s", started.elapsed().as_secs_f64());

    // 3. With the index.
    let secs = store_messages(&store, &corpus, &conversations, unindexed, measure).await;
    let after = measure as f64 / secs;
    println!(
        "writes with the index: {after:.0} messages/s ({measure} messages, {unindexed} → {total} stored); cost {:.0}%",
        (1.0 - after / before) * 100.0
    );

    // 4. Queries: words of every frequency but the 10 commonest (stop words a user rarely
    // searches alone), in one company, a page of 20 (21 asked, as the service does).
    let mut rng = StdRng::seed_from_u64(7);
    for (label, words_per_query) in [("one-word", 1), ("two-word", 2)] {
        let mut times = Vec::with_capacity(queries);
        let mut hits = 0;
        for _ in 0..queries {
            let q: Vec<&str> = (0..words_per_query).map(|_| corpus.words[rng.random_range(10..corpus.words.len())]).collect();
            let search = MessageSearch {
                query: SearchQuery::parse(&q.join(" ")).unwrap(),
                company_id: format!("company-{}", rng.random_range(0..COMPANIES)),
                conversation_id: None,
                thread_id: None,
                from: None,
                to: None,
                after: None,
                limit: 21,
            };
            let started = Instant::now();
            hits += store.search_messages(&search).await.unwrap().len();
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{label} queries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({queries} queries, {:.1} hits each on average)",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            hits as f64 / queries as f64
        );
    }
}
