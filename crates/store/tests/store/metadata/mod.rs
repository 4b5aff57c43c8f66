//! One behaviour, two backends: every case in [`cases`] runs against the embedded SQLite
//! store and against Postgres (a database of its own per test, dropped afterwards; skipped
//! with a printed reason when `PYNOMALY_TEST_DATABASE_URL` is unset).

mod cases;

/// Generates one `#[tokio::test]` per case and backend: `sqlite::<case>`, `postgres::<case>`.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use pynomaly_store::SqliteStore;
            $(
                #[tokio::test]
                async fn $case() {
                    let store = SqliteStore::in_memory().await.expect("in-memory SQLite opens");
                    super::cases::$case(&store).await;
                }
            )*
        }

        mod postgres {
            use pynomaly_store::{MetadataStore, PostgresStore};
            use testkit::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    TestDatabase::run(async |url| {
                        let store = PostgresStore::connect(&url, 4).await.expect("Postgres store opens");
                        super::cases::$case(&store).await;
                        store.close().await;
                    })
                    .await;
                }
            )*
        }
    };
}

suite!(
    api_keys_are_found_by_hash_listed_per_tenant_and_revoked,
    a_duplicate_key_hash_is_a_conflict,
    versions_are_numbered_per_tenant_and_name_and_the_first_is_production,
    concurrent_trainings_of_one_name_get_consecutive_versions,
    models_are_listed_with_their_latest_and_production_versions,
    a_job_is_claimed_once_and_finished_once,
    an_idempotency_key_returns_the_first_job,
    concurrent_submissions_with_one_idempotency_key_create_one_job,
    jobs_are_listed_newest_first_per_tenant,
    a_queued_job_is_cancelled_at_once_and_a_running_one_is_asked_to_stop,
    interrupted_jobs_are_requeued_unless_cancelled,
    a_delivered_job_is_claimed_by_one_worker_unless_taken_over,
    writes_of_a_worker_that_lost_its_job_are_refused,
    a_released_job_waits_for_its_backoff_and_keeps_the_reason,
    a_released_job_whose_cancel_was_asked_ends_cancelled,
    job_counts_count_queued_and_running,
    a_job_that_registers_twice_gets_its_first_version,
    stage_changes_keep_one_production_version_and_their_history,
    a_model_has_at_most_one_rollout_per_tenant,
    running_jobs_are_listed_with_their_workers,
    users_have_unique_names_are_listed_per_tenant_and_disabled,
    audit_rows_are_appended_in_batches_and_filtered_per_tenant,
);

mod postgres_only {
    use futures::future::join_all;
    use pynomaly_store::{MetadataStore, PostgresStore};
    use testkit::TestDatabase;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_starting_together_apply_each_migration_once() {
        TestDatabase::run(async |url| {
            let mut instances = Vec::new();
            for _ in 0..4 {
                instances.push(
                    PostgresStore::connect_without_migrating(&url, 2)
                        .await
                        .unwrap(),
                );
            }
            let applied = join_all(instances.iter().map(PostgresStore::migrate)).await;
            let applied: Vec<usize> = applied.into_iter().map(Result::unwrap).collect();
            let migrations = std::fs::read_dir(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../migrations/postgres"
            ))
            .unwrap()
            .count();
            assert_eq!(applied.iter().sum::<usize>(), migrations, "{applied:?}");
            assert_eq!(
                instances[0].migrate().await.unwrap(),
                0,
                "nothing left to apply"
            );
            assert!(instances[1].ping().await.is_ok());
            for i in &instances {
                i.close().await;
            }
        })
        .await;
    }
}
