//! Message search on MongoDB, two ways. Where the server has text indexes, a text index on
//! `content` (no language: no stemming, no stop words) and `$text` with every term quoted,
//! ranked by text score. Where it does not (start-up found that creating the index or a
//! `$text` query fails), case-insensitive regular expressions of the escaped words pick
//! candidates newest first, and `SearchQuery::matches` keeps the ones that hold every word and
//! phrase as whole words, as FTS5 would. The query building and result mapping are plain
//! functions so they are unit-tested without a server that has `$text`.

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};

use super::convert::{bson_date, message_from_doc, object_id};
use super::contains_regex;
use crate::domain::time::from_millis;
use crate::domain::{MessageSearch, SearchHit, SearchPosition, SearchQuery};
use crate::store::{StoreError, StoreResult};

/// The field the text score is put in while ranking.
const SCORE_FIELD: &str = "search_score";
/// The text index's options: a term means the word as written, in any language.
pub(super) const TEXT_INDEX_LANGUAGE: &str = "none";

/// The conditions every search shares: which conversations (`conversations`, a value for
/// `conversation_id`), not deleted, the thread, the `created_at` range.
pub(super) fn base_filter(search: &MessageSearch, conversations: Bson) -> Document {
    let mut filter = doc! { "conversation_id": conversations, "metadata.deleted_at": Bson::Null };
    if let Some(t) = &search.thread_id {
        filter.insert("thread_id", t);
    }
    let mut range = Document::new();
    if let Some(t) = search.from {
        range.insert("$gte", bson_date(&t));
    }
    if let Some(t) = search.to {
        range.insert("$lte", bson_date(&t));
    }
    if !range.is_empty() {
        filter.insert("created_at", range);
    }
    filter
}

/// The `$text` condition for a query.
pub(super) fn text_condition(query: &SearchQuery) -> Document {
    doc! { "$search": query.mongo_text_search(), "$language": TEXT_INDEX_LANGUAGE }
}

/// The aggregation that ranks `$text` matches: text score, then `_id`, both descending,
/// continuing after `after`, at most `limit`.
pub(super) fn text_search_pipeline(search: &MessageSearch, base: Document) -> StoreResult<Vec<Document>> {
    let mut matching = base;
    matching.insert("$text", text_condition(&search.query));
    let mut pipeline = vec![doc! { "$match": matching }, doc! { "$addFields": { SCORE_FIELD: { "$meta": "textScore" } } }];
    if let Some(SearchPosition { score, id, .. }) = &search.after {
        let id = object_id(id)?;
        pipeline.push(doc! { "$match": { "$or": [
            { SCORE_FIELD: { "$lt": *score } },
            { SCORE_FIELD: *score, "_id": { "$lt": id } },
        ] } });
    }
    pipeline.push(doc! { "$sort": { SCORE_FIELD: -1, "_id": -1 } });
    pipeline.push(doc! { "$limit": i64::from(search.limit) });
    Ok(pipeline)
}

/// A ranked `$text` result as a hit: the message and its text score.
pub(super) fn hit_from_text_result(mut d: Document) -> StoreResult<SearchHit> {
    let score = match d.remove(SCORE_FIELD) {
        Some(Bson::Double(s)) => s,
        Some(Bson::Int32(s)) => f64::from(s),
        Some(Bson::Int64(s)) => s as f64,
        _ => return Err(StoreError::Corrupt("a $text result without its score".into())),
    };
    Ok(SearchHit { message: message_from_doc(&d)?, score })
}

/// The regex fallback's candidates: every word of the query as an escaped case-insensitive
/// substring of `content`, newest first after `after` (whose score is a `created_at` in epoch
/// milliseconds).
pub(super) fn regex_candidates_filter(query: &SearchQuery, base: Document, after: Option<&SearchPosition>) -> StoreResult<Document> {
    let mut filter = base;
    let words: Vec<Document> = query.words().into_iter().map(|w| doc! { "content": contains_regex(w) }).collect();
    filter.insert("$and", words);
    if let Some(SearchPosition { score, id, .. }) = after {
        let at = bson_date(&from_millis(*score as i64));
        filter.insert("$or", vec![
            doc! { "created_at": { "$lt": at.clone() } },
            doc! { "created_at": at, "_id": { "$lt": object_id(id)? } },
        ]);
    }
    Ok(filter)
}

/// A fallback hit, ranked by recency: its score is its `created_at` in epoch milliseconds.
pub(super) fn hit_from_candidate(query: &SearchQuery, d: &Document) -> StoreResult<Option<SearchHit>> {
    let message = message_from_doc(d)?;
    if !query.matches(&message.content) {
        return Ok(None);
    }
    let score = message.created_at.timestamp_millis() as f64;
    Ok(Some(SearchHit { message, score }))
}

/// A conversation reference as stored in a message (hex string or ObjectId), as an ObjectId.
pub(super) fn conversation_object_id(v: &Bson) -> Option<ObjectId> {
    match v {
        Bson::ObjectId(oid) => Some(*oid),
        Bson::String(s) => ObjectId::parse_str(s).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::from_millis;

    fn search(q: &str, after: Option<SearchPosition>) -> MessageSearch {
        MessageSearch {
            query: SearchQuery::parse(q).unwrap(),
            company_id: "acme".into(),
            conversation_id: None,
            thread_id: Some("t-1".into()),
            from: Some(from_millis(1_000)),
            to: Some(from_millis(2_000)),
            after,
            limit: 21,
        }
    }

    #[test]
    fn text_pipeline_quotes_every_term_and_ranks_by_score() {
        let s = search("refund \"credit card\" -x", None);
        let pipeline = text_search_pipeline(&s, base_filter(&s, Bson::String("c1".into()))).unwrap();
        assert_eq!(
            pipeline,
            vec![
                doc! { "$match": {
                    "conversation_id": "c1",
                    "metadata.deleted_at": Bson::Null,
                    "thread_id": "t-1",
                    "created_at": { "$gte": bson_date(&from_millis(1_000)), "$lte": bson_date(&from_millis(2_000)) },
                    "$text": { "$search": "\"refund\" \"credit card\" \"x\"", "$language": "none" },
                } },
                doc! { "$addFields": { "search_score": { "$meta": "textScore" } } },
                doc! { "$sort": { "search_score": -1, "_id": -1 } },
                doc! { "$limit": 21_i64 },
            ]
        );
    }

    #[test]
    fn text_pipeline_continues_after_the_cursor() {
        let id = "65a1b2c3d4e5f6a7b8c9d0e1";
        let s = search("refund", Some(SearchPosition { score: 1.5, id: id.into(), seen: 20 }));
        let pipeline = text_search_pipeline(&s, Document::new()).unwrap();
        assert_eq!(
            pipeline[2],
            doc! { "$match": { "$or": [
                { "search_score": { "$lt": 1.5 } },
                { "search_score": 1.5, "_id": { "$lt": ObjectId::parse_str(id).unwrap() } },
            ] } }
        );
        assert_eq!(pipeline.len(), 5);
    }

    #[test]
    fn text_results_map_to_hits() {
        let oid = ObjectId::new();
        let d = doc! {
            "_id": oid, "conversation_id": "65a1b2c3d4e5f6a7b8c9d0e2", "content": "a refund", "role": "user",
            "sender_type": "user", "sender_id": "u", "message_type": "text", "created_at": bson_date(&from_millis(5)),
            "search_score": 0.75,
        };
        let hit = hit_from_text_result(d.clone()).unwrap();
        assert_eq!(hit.score, 0.75);
        assert_eq!(hit.message.id, oid.to_hex());
        assert_eq!(hit.message.content, "a refund");
        assert!(!serde_json::to_value(&hit.message).unwrap()["metadata"].as_object().unwrap().contains_key("search_score"));
        let mut unscored = d;
        unscored.remove("search_score");
        assert!(hit_from_text_result(unscored).is_err());
    }

    #[test]
    fn regex_candidates_escape_every_word() {
        let q = SearchQuery::parse("a.b \"c d\"").unwrap();
        let f = regex_candidates_filter(&q, Document::new(), None).unwrap();
        let words: Vec<String> = f
            .get_array("$and")
            .unwrap()
            .iter()
            .map(|d| match d.as_document().unwrap().get("content").unwrap() {
                Bson::RegularExpression(re) => format!("{}/{}", re.pattern, re.options),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(words, vec!["a/i", "b/i", "c/i", "d/i"]);
    }
}
