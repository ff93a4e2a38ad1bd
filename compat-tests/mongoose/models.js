'use strict';
// The shared Mongoose models as the sibling services (agent service, voice agent, analytics)
// declare them: the original field layout of the `conversations` and `messages` collections.

const mongoose = require('mongoose');
const { Schema } = mongoose;

const threadSchema = new Schema({
  id: { type: String, required: true },
  title: { type: String, required: true },
  created_at: { type: Date, default: Date.now },
  message_count: { type: Number, default: 0 },
});

const conversationSchema = new Schema(
  {
    agent_id: { type: String, required: true },
    company_id: { type: String, required: true },
    contact_id: String,
    user_id: String,
    participants: [String],
    title: String,
    channel: { type: String, enum: ['chat', 'voice', 'video', 'email', 'sms'], required: true },
    status: { type: String, enum: ['active', 'ended', 'completed', 'archived'], default: 'active' },
    started_at: { type: Date, default: Date.now },
    ended_at: Date,
    tags: [String],
    metadata: { type: Schema.Types.Mixed, default: {} },
    threads: [threadSchema],
    summary: String,
  },
  { timestamps: true, minimize: false },
);

const reactionSchema = new Schema(
  { emoji: String, user_id: String, created_at: Date },
  { _id: false },
);

const messageSchema = new Schema(
  {
    conversation_id: { type: String, required: true },
    thread_id: { type: String, default: null },
    sender_type: { type: String, enum: ['user', 'agent', 'system'], required: true },
    sender_id: String,
    role: { type: String, enum: ['user', 'assistant', 'system'], required: true },
    content: { type: String, required: true },
    message_type: { type: String, enum: ['text', 'audio', 'video', 'file', 'image', 'system'], default: 'text' },
    attachments: [{ _id: false, url: String, type: { type: String }, name: String, size: Number }],
    ai_metadata: {
      model: String,
      tokens_used: Number,
      response_time_ms: Number,
      temperature: Number,
      finish_reason: String,
    },
    metadata: {
      read_at: Date,
      delivered_at: Date,
      edited_at: Date,
      deleted_at: Date,
      reactions: [reactionSchema],
      intent: Schema.Types.Mixed,
      sentiment: Schema.Types.Mixed,
    },
    created_at: { type: Date, default: Date.now },
  },
  { minimize: false },
);

function models(connection) {
  return {
    Conversation: connection.model('Conversation', conversationSchema, 'conversations'),
    Message: connection.model('Message', messageSchema, 'messages'),
  };
}

module.exports = { models };
