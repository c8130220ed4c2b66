//! Recommenders on clustered synthetic data: beating popularity, content by category, determinism,
//! serde round trips, typed errors.

use std::collections::BTreeMap;

use lethe_ml::recommend::{
    evaluate_at_k, AlsModel, AlsParams, ContentModel, ContentParams, Interactions, ItemId, ItemKnn, ItemKnnParams,
    Popularity, PopularityParams, UserId,
};
use lethe_ml::synthetic::{clustered, ClusteredConfig, ClusteredData};
use lethe_ml::MlError;

fn data() -> ClusteredData {
    clustered(&ClusteredConfig::default(), 21).unwrap()
}

fn als_params() -> AlsParams {
    AlsParams { factors: 16, regularization: 0.1, alpha: 2.0, iterations: 8, ..AlsParams::default() }
}

#[test]
fn knn_and_als_beat_popularity_on_held_out_interactions() {
    let data = data();
    let (train, test) = data.interactions.split_holdout(5, 1).unwrap();
    let pop = Popularity::train(&train, &BTreeMap::new(), &PopularityParams::default()).unwrap();
    let knn = ItemKnn::train(&train, &ItemKnnParams::default()).unwrap();
    let als = AlsModel::train(&train, &als_params(), 3).unwrap();
    let pop_r = evaluate_at_k(&pop, &train, &test, 10).unwrap();
    let knn_r = evaluate_at_k(&knn, &train, &test, 10).unwrap();
    let als_r = evaluate_at_k(&als, &train, &test, 10).unwrap();
    eprintln!("NDCG@10 popularity {:.4}, item-kNN {:.4}, ALS {:.4}", pop_r.ndcg, knn_r.ndcg, als_r.ndcg);
    eprintln!("recall@10 popularity {:.4}, item-kNN {:.4}, ALS {:.4}", pop_r.recall, knn_r.recall, als_r.recall);
    assert_eq!(pop_r.users, 300);
    assert!(knn_r.ndcg > pop_r.ndcg * 1.1, "kNN {knn_r:?} vs popularity {pop_r:?}");
    assert!(als_r.ndcg > pop_r.ndcg * 1.1, "ALS {als_r:?} vs popularity {pop_r:?}");
}

#[test]
fn segment_popularity_follows_the_segment() {
    let data = data();
    let segments: BTreeMap<UserId, String> =
        data.user_cluster.iter().enumerate().map(|(u, c)| (UserId(u as u32), format!("cluster-{c}"))).collect();
    let pop = Popularity::train(&data.interactions, &segments, &PopularityParams::default()).unwrap();
    for cluster in 0..5u32 {
        let recs = pop.recommend(Some(&format!("cluster-{cluster}")), 5, &[]).unwrap();
        assert!(recs.iter().all(|(i, _)| data.item_category[i.0 as usize] == cluster), "{recs:?}");
    }
}

#[test]
fn als_fold_in_agrees_with_trained_user() {
    let data = data();
    let als = AlsModel::train(&data.interactions, &als_params(), 3).unwrap();
    let user = UserId(7);
    let history = data.interactions.history(user).to_vec();
    let seen: Vec<ItemId> = history.iter().map(|(i, _)| *i).collect();
    let trained: Vec<ItemId> = als.recommend(user, 10, &seen).unwrap().into_iter().map(|(i, _)| i).collect();
    let folded: Vec<ItemId> =
        als.recommend_for_history(&history, 10, &seen).unwrap().into_iter().map(|(i, _)| i).collect();
    let overlap = trained.iter().filter(|i| folded.contains(i)).count();
    assert!(overlap >= 7, "{trained:?} vs {folded:?}");
    assert!(trained.iter().all(|i| !seen.contains(i)));
}

#[test]
fn tf_idf_recommends_same_category_first() {
    let data = data();
    for params in [ContentParams { numeric_weight: 0.0, ..ContentParams::default() }, ContentParams::default()] {
        let model = ContentModel::train(&data.content, &params).unwrap();
        for item in data.content.iter().map(|c| c.item) {
            let recs = model.recommend(item, 5, &[]).unwrap();
            assert_eq!(recs.len(), 5);
            let category = data.item_category[item.0 as usize];
            assert!(recs.iter().all(|(i, _)| data.item_category[i.0 as usize] == category), "item {item}: {recs:?}");
            assert!(recs.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }
}

#[test]
fn every_recommender_is_deterministic_and_round_trips() {
    let data = data();
    let (train, _) = data.interactions.split_holdout(3, 2).unwrap();
    let segments: BTreeMap<UserId, String> = [(UserId(0), "a".to_string())].into();

    let knn = |_: u64| ItemKnn::train(&train, &ItemKnnParams::default()).unwrap();
    let als = |seed: u64| AlsModel::train(&train, &als_params(), seed).unwrap();
    let content = |_: u64| ContentModel::train(&data.content, &ContentParams::default()).unwrap();
    let pop = |_: u64| Popularity::train(&train, &segments, &PopularityParams::default()).unwrap();

    assert_eq!(serde_json::to_vec(&knn(1)).unwrap(), serde_json::to_vec(&knn(1)).unwrap());
    assert_eq!(serde_json::to_vec(&als(1)).unwrap(), serde_json::to_vec(&als(1)).unwrap());
    assert_ne!(serde_json::to_vec(&als(1)).unwrap(), serde_json::to_vec(&als(2)).unwrap());
    assert_eq!(serde_json::to_vec(&content(1)).unwrap(), serde_json::to_vec(&content(1)).unwrap());
    assert_eq!(serde_json::to_vec(&pop(1)).unwrap(), serde_json::to_vec(&pop(1)).unwrap());

    let knn_model = knn(1);
    let knn_back: ItemKnn = serde_json::from_str(&serde_json::to_string(&knn_model).unwrap()).unwrap();
    assert_eq!(knn_back, knn_model);
    let history = [ItemId(0), ItemId(5)];
    assert_eq!(
        knn_back.recommend(&history, 10, &history).unwrap(),
        knn_model.recommend(&history, 10, &history).unwrap()
    );

    let als_model = als(1);
    let als_back: AlsModel = serde_json::from_str(&serde_json::to_string(&als_model).unwrap()).unwrap();
    assert_eq!(als_back, als_model);
    assert_eq!(als_back.recommend(UserId(3), 10, &[]).unwrap(), als_model.recommend(UserId(3), 10, &[]).unwrap());

    let content_model = content(1);
    let content_back: ContentModel = serde_json::from_str(&serde_json::to_string(&content_model).unwrap()).unwrap();
    assert_eq!(content_back.recommend(ItemId(4), 5, &[]).unwrap(), content_model.recommend(ItemId(4), 5, &[]).unwrap());

    let pop_model = pop(1);
    let pop_back: Popularity = serde_json::from_str(&serde_json::to_string(&pop_model).unwrap()).unwrap();
    assert_eq!(pop_back.recommend(Some("a"), 5, &[]).unwrap(), pop_model.recommend(Some("a"), 5, &[]).unwrap());
}

#[test]
fn recommenders_give_typed_errors() {
    let data = data();
    let empty = Interactions::default();
    assert_eq!(ItemKnn::train(&empty, &ItemKnnParams::default()).unwrap_err().code(), "empty_input");
    assert_eq!(AlsModel::train(&empty, &als_params(), 0).unwrap_err().code(), "empty_input");
    assert_eq!(
        Popularity::train(&empty, &BTreeMap::new(), &PopularityParams::default()).unwrap_err().code(),
        "empty_input"
    );
    let bad = AlsParams { factors: 0, ..als_params() };
    assert_eq!(AlsModel::train(&data.interactions, &bad, 0).unwrap_err().code(), "invalid_parameter");
    let bad = ItemKnnParams { shrinkage: f64::NAN, ..ItemKnnParams::default() };
    assert_eq!(ItemKnn::train(&data.interactions, &bad).unwrap_err().code(), "invalid_parameter");

    let als = AlsModel::train(&data.interactions, &AlsParams { iterations: 1, ..als_params() }, 0).unwrap();
    assert_eq!(als.recommend(UserId(10_000), 5, &[]).unwrap_err(), MlError::UnknownUser(UserId(10_000)));
    assert_eq!(als.recommend(UserId(1), 0, &[]).unwrap_err().code(), "invalid_parameter");
    assert_eq!(als.recommend_for_history(&[(ItemId(1), -1.0)], 5, &[]).unwrap_err().code(), "out_of_range");
    assert!(als.recommend_for_history(&[(ItemId(99_999), 1.0)], 5, &[]).unwrap().is_empty());

    let content = ContentModel::train(&data.content, &ContentParams::default()).unwrap();
    assert_eq!(content.recommend(ItemId(99_999), 5, &[]).unwrap_err(), MlError::UnknownItem(ItemId(99_999)));
    assert_eq!(data.interactions.split_holdout(0, 0).unwrap_err().code(), "invalid_parameter");
}
