//! Threads: branches of a conversation. A thread lives inside its conversation document
//! (`threads[]`, with its own message count); its messages carry its `thread_id`.

use super::events::{self, raw, ThreadCreated};
use super::{ChatService, On, ServiceError, ServiceResult, CONVERSATION_NOT_FOUND};
use crate::domain::audit::AuditAction;
use crate::auth::Principal;
use crate::domain::time::now;
use crate::domain::{clean_title, parse_thread_id, Message, Thread, ThreadScope, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT};
use crate::store::Page;

impl ChatService {
    pub async fn create_thread(&self, p: &Principal, conversation_id: &str, title: &str) -> ServiceResult<Thread> {
        let c = self.conversation_for(p, conversation_id).await?;
        let thread = Thread { id: uuid::Uuid::new_v4().to_string(), title: clean_title(title)?, created_at: now(), message_count: 0 };
        self.store
            .add_thread(self.scope(p)?, &c.id, &thread)
            .await?
            .ok_or(ServiceError::NotFound(CONVERSATION_NOT_FOUND))?;
        self.auditor.record(p, AuditAction::ThreadCreate, Some(&c.company_id), On::conversation(&c.id).subject(&thread.id));
        self.emit(&c.id, events::THREAD_CREATED, &raw(&ThreadCreated { conversation_id: &c.id, thread: &thread })).await;
        Ok(thread)
    }

    /// A thread and the newest page of its messages.
    pub async fn get_thread(
        &self,
        p: &Principal,
        conversation_id: &str,
        thread_id: &str,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<(Thread, Page<Message>, u32, u64)> {
        let c = self.conversation_for(p, conversation_id).await?;
        let thread_id = parse_thread_id("threadId", thread_id)?;
        let thread = c.thread(&thread_id).cloned().ok_or(ServiceError::NotFound("Thread not found"))?;
        let (limit, offset) = super::conversations::page_params(limit, offset, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT)?;
        let page = self.store.list_messages(&c.id, &ThreadScope::Thread(thread_id), limit, offset).await?;
        Ok((thread, page, limit, offset))
    }

    /// Checks that a client may switch to `thread_id` (`None`: the main thread).
    pub async fn check_thread(&self, p: &Principal, conversation_id: &str, thread_id: Option<&str>) -> ServiceResult<String> {
        let c = self.conversation_for(p, conversation_id).await?;
        if let Some(t) = thread_id
            && c.thread(t).is_none()
        {
            return Err(ServiceError::NotFound("Thread not found"));
        }
        Ok(c.id)
    }
}
