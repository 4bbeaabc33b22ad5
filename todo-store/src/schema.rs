//! The tables, as diesel sees them (see `migrations/` for the SQL).

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        role -> Text,
        disabled -> SmallInt,
        password_hash -> Text,
        tokens_revoked_before -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
        email_verified -> SmallInt,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Text,
        user_id -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        revoked -> SmallInt,
        grace_exchanges -> Integer,
    }
}

diesel::table! {
    api_tokens (session_id) {
        session_id -> Text,
        token_hash -> Text,
        name -> Text,
        scopes -> Text,
        project_id -> Nullable<Text>,
    }
}

diesel::table! {
    email_verifications (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        email -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    password_resets (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    totp_authenticators (user_id) {
        user_id -> Text,
        sealed_secret -> Binary,
        created_at -> BigInt,
        confirmed_at -> Nullable<BigInt>,
        last_step -> Nullable<BigInt>,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Text,
        code_hash -> Text,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        attempts_left -> Integer,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        credential_id -> Binary,
        credential -> Binary,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    passkey_ceremonies (key) {
        key -> Text,
        kind -> Text,
        user_id -> Nullable<Text>,
        state -> Binary,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        kind -> Text,
        created_at -> BigInt,
        last_used_at -> BigInt,
        expires_at -> BigInt,
        user_agent -> Nullable<Text>,
        address -> Nullable<Text>,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Text,
        owner_id -> Text,
        title -> Text,
        description -> Text,
        search_text -> Text,
        done -> SmallInt,
        completed_at -> Nullable<BigInt>,
        due_at -> Nullable<BigInt>,
        priority -> SmallInt,
        labels -> Text,
        archived -> SmallInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        version -> BigInt,
        project_id -> Text,
        created_by -> Text,
        parent_id -> Nullable<Text>,
        recurrence -> Nullable<Text>,
        time_zone -> Text,
        series_id -> Nullable<Text>,
        series_start -> Nullable<BigInt>,
        occurrence -> Nullable<BigInt>,
        reminders -> Text,
        /// The due sort's key: `due_at`, or the largest BIGINT for an
        /// undated task (generated; never written).
        due_key -> BigInt,
    }
}

diesel::table! {
    task_labels (task_id, label) {
        task_id -> Text,
        owner_id -> Text,
        label -> Text,
    }
}

diesel::table! {
    login_failures (throttle_key) {
        throttle_key -> Text,
        failures -> BigInt,
        last_at -> BigInt,
        blocked_until -> BigInt,
    }
}

diesel::table! {
    login_devices (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        issued_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    change_streams (owner_id) {
        owner_id -> Text,
        pruned_through -> BigInt,
        task_count -> BigInt,
        relayed_through -> BigInt,
        relay_leased_until -> Nullable<BigInt>,
        relay_served_at -> BigInt,
        webhooks_served_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    change_log (pos) {
        pos -> BigInt,
        /// PostgreSQL's only: the number the sequencer gave the row (on
        /// SQLite, `pos` is the number).
        seq -> Nullable<BigInt>,
        project_id -> Nullable<Text>,
        recipient_id -> Nullable<Text>,
        kind -> Text,
        subject_id -> Text,
        recorded_at -> BigInt,
        title -> Nullable<Text>,
        description -> Nullable<Text>,
        done -> Nullable<SmallInt>,
        completed_at -> Nullable<BigInt>,
        due_at -> Nullable<BigInt>,
        priority -> Nullable<SmallInt>,
        labels -> Nullable<Text>,
        archived -> Nullable<SmallInt>,
        created_at -> Nullable<BigInt>,
        updated_at -> Nullable<BigInt>,
        version -> Nullable<BigInt>,
        created_by -> Nullable<Text>,
        parent_id -> Nullable<Text>,
        recurrence -> Nullable<Text>,
        time_zone -> Nullable<Text>,
        series_id -> Nullable<Text>,
        series_start -> Nullable<BigInt>,
        occurrence -> Nullable<BigInt>,
        reminders -> Nullable<Text>,
        color -> Nullable<Text>,
        inbox -> Nullable<SmallInt>,
        role -> Nullable<Text>,
        member_id -> Nullable<Text>,
        username -> Nullable<Text>,
    }
}

diesel::table! {
    /// A view (migration `…_project_log`): each user's stream. (Its
    /// `recipient_id` is left out: diesel's tables hold 32 columns.)
    change_feed (reader, seq) {
        reader -> Text,
        reader_role -> Nullable<Text>,
        seq -> BigInt,
        project_id -> Nullable<Text>,
        kind -> Text,
        subject_id -> Text,
        recorded_at -> BigInt,
        title -> Nullable<Text>,
        description -> Nullable<Text>,
        done -> Nullable<SmallInt>,
        completed_at -> Nullable<BigInt>,
        due_at -> Nullable<BigInt>,
        priority -> Nullable<SmallInt>,
        labels -> Nullable<Text>,
        archived -> Nullable<SmallInt>,
        created_at -> Nullable<BigInt>,
        updated_at -> Nullable<BigInt>,
        version -> Nullable<BigInt>,
        created_by -> Nullable<Text>,
        parent_id -> Nullable<Text>,
        recurrence -> Nullable<Text>,
        time_zone -> Nullable<Text>,
        series_id -> Nullable<Text>,
        series_start -> Nullable<BigInt>,
        occurrence -> Nullable<BigInt>,
        reminders -> Nullable<Text>,
        color -> Nullable<Text>,
        inbox -> Nullable<SmallInt>,
        role -> Nullable<Text>,
        member_id -> Nullable<Text>,
        username -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> Text,
        owner_id -> Text,
        url -> Text,
        events -> Text,
        secret -> Text,
        created_at -> BigInt,
        delivered_through -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        failing_since -> Nullable<BigInt>,
        disabled_at -> Nullable<BigInt>,
        leased_until -> Nullable<BigInt>,
    }
}

diesel::table! {
    webhook_deliveries (webhook_id, at, seq) {
        webhook_id -> Text,
        at -> BigInt,
        seq -> BigInt,
        kind -> Text,
        status -> Nullable<BigInt>,
        latency_ms -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        owner_id -> Text,
        name -> Text,
        description -> Text,
        color -> Nullable<Text>,
        inbox -> SmallInt,
        archived -> SmallInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    project_members (project_id, user_id) {
        project_id -> Text,
        user_id -> Text,
        role -> Text,
        added_at -> BigInt,
        joined_pos -> Nullable<BigInt>,
        joined_seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    task_reminders (task_id, fire_at) {
        task_id -> Text,
        fire_at -> BigInt,
        fired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    project_feeds (project_id) {
        project_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(api_tokens -> sessions (session_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(email_verifications -> users (user_id));
diesel::joinable!(totp_authenticators -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(mfa_challenges -> users (user_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(passkey_ceremonies -> users (user_id));
diesel::joinable!(tasks -> users (owner_id));
diesel::joinable!(project_members -> projects (project_id));
diesel::joinable!(project_members -> users (user_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::joinable!(task_labels -> tasks (task_id));
diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    email_verifications,
    password_resets,
    totp_authenticators,
    recovery_codes,
    mfa_challenges,
    passkeys,
    passkey_ceremonies,
    sessions,
    task_reminders,
    project_feeds,
    users,
    refresh_tokens,
    tasks,
    task_labels,
    login_failures,
    login_devices,
    change_streams,
    change_log,
    change_feed,
    webhooks,
    webhook_deliveries,
    projects,
    project_members
);
