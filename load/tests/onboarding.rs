//! The onboarding walk through `common::twilio`'s account operations against the simulator:
//! subaccount, Trust Hub bundles, A2P brand, numbers, Messaging Service and campaign.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::PhoneNumber;
use common::twilio::accounts::{
    A2P_TRUST_PRODUCT_POLICY_SID, AccountStatus, BrandStatus, BrandType, BundleKind, BundleStatus, CampaignStatus,
    EvaluationStatus, NewAddress, NewBrandRegistration, NewBundle, NewCampaign, NewEndUser, NewIncomingNumber,
    NewMessagingService, NewSupportingDocument, NumberSearch, SECONDARY_CUSTOMER_PROFILE_POLICY_SID, Subaccount,
};
use common::twilio::signature::verify;
use common::twilio::{AccountOpError, CreateOutcome, TwilioAccount, TwilioClient, TwilioClientSettings};
use load::simulator::{
    BrandOutcome, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, OnboardingSimConfig, RunningSimulator, Simulator,
    SimulatorConfig,
};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tokio::sync::mpsc;

const REVIEW: Duration = Duration::from_millis(200);

fn main_account() -> TwilioAccount {
    TwilioAccount::new(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN.to_owned())
}

fn config(outcome: BrandOutcome) -> SimulatorConfig {
    SimulatorConfig {
        onboarding: OnboardingSimConfig {
            brand_outcome: outcome,
            brand_review_delay: REVIEW,
            brand_score: 80,
            ..OnboardingSimConfig::default()
        },
        ..SimulatorConfig::default()
    }
}

async fn start(config: SimulatorConfig) -> anyhow::Result<(RunningSimulator, TwilioClient)> {
    let sim = Simulator::start(config).await?;
    let client = TwilioClient::new(&TwilioClientSettings {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..TwilioClientSettings::all_at(sim.base_url())
    })?;
    Ok((sim, client))
}

/// A callback as the receiver saw it: signature header and form parameters.
type Received = (Option<String>, Vec<(String, String)>);

/// A tiny status callback receiver; returns its URL (with a query, which is signed too).
async fn receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Received>)> {
    let (sender, received) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/twilio/brand",
            post(
                |State(sender): State<mpsc::UnboundedSender<Received>>, headers: HeaderMap, body: Bytes| async move {
                    let signature = headers
                        .get("x-twilio-signature")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let params = form_urlencoded::parse(&body).into_owned().collect();
                    let _ = sender.send((signature, params));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/twilio/brand?tenant=t1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

fn business_information() -> NewEndUser {
    NewEndUser {
        end_user_type: "customer_profile_business_information".into(),
        friendly_name: "Acme business information".into(),
        attributes: serde_json::json!({
            "business_name": "Acme Inc",
            "business_type": "Corporation",
            "business_registration_identifier": "EIN",
            "business_registration_number": "12-3456789",
            "website_url": "https://acme.example.com",
        }),
    }
}

fn representative() -> NewEndUser {
    NewEndUser {
        end_user_type: "authorized_representative_1".into(),
        friendly_name: "Acme representative".into(),
        attributes: serde_json::json!({"first_name": "Ana", "last_name": "Lima", "email": "ana@acme.example.com"}),
    }
}

fn bundle(name: &str, policy_sid: &str, status_callback: Option<String>) -> NewBundle {
    NewBundle {
        friendly_name: name.into(),
        email: "compliance@acme.example.com".into(),
        policy_sid: policy_sid.into(),
        status_callback,
    }
}

/// Builds, checks and submits a customer profile and a trust product; returns their SIDs.
async fn submitted_bundles(
    client: &TwilioClient,
    account: &TwilioAccount,
    status_callback: Option<String>,
) -> anyhow::Result<(String, String)> {
    let kind = BundleKind::CustomerProfile;
    let profile = client
        .create_bundle(
            account,
            kind,
            &bundle("Acme profile", SECONDARY_CUSTOMER_PROFILE_POLICY_SID, status_callback),
        )
        .await?;
    assert_eq!(profile.status, BundleStatus::Draft);
    assert!(profile.sid.starts_with("BU"));
    let business = client.create_end_user(account, &business_information()).await?;
    assert_eq!(business.end_user_type, "customer_profile_business_information");
    let person = client.create_end_user(account, &representative()).await?;
    // The business address is an Address resource of the account, which the address document
    // names; a document naming no address of the account (free text, or a made-up SID) does
    // not satisfy the evaluation.
    let resource = client
        .create_address(
            account,
            &NewAddress {
                customer_name: "Acme Inc".into(),
                street: "1 Main St".into(),
                city: "San Francisco".into(),
                region: "CA".into(),
                postal_code: "94105".into(),
                iso_country: "US".into(),
                friendly_name: "Acme business address".into(),
            },
        )
        .await?;
    assert!(
        resource.sid.starts_with("AD") && resource.sid.len() == 34,
        "{resource:?}"
    );
    let document = |address_sid: String| NewSupportingDocument {
        document_type: "customer_profile_address".into(),
        friendly_name: "Acme address".into(),
        attributes: serde_json::json!({ "address_sids": address_sid }),
    };
    let made_up = client
        .create_supporting_document(account, &document(format!("AD{}", "1".repeat(32))))
        .await?;
    let address = client
        .create_supporting_document(account, &document(resource.sid.clone()))
        .await?;
    assert!(address.sid.starts_with("RD"));
    for object in [&business.sid, &person.sid, &made_up.sid] {
        let assignment = client.assign_to_bundle(account, kind, &profile.sid, object).await?;
        assert_eq!(
            (assignment.object_sid.as_str(), assignment.bundle_sid.as_deref()),
            (object.as_str(), Some(profile.sid.as_str()))
        );
    }
    // Without a document naming a real address the profile is not compliant, and cannot be
    // submitted.
    let evaluation = client
        .evaluate_bundle(account, kind, &profile.sid, SECONDARY_CUSTOMER_PROFILE_POLICY_SID)
        .await?;
    assert_eq!(evaluation.status, EvaluationStatus::Noncompliant);
    assert_eq!(evaluation.results.iter().filter(|result| !result.passed).count(), 1);
    let refused = client.submit_bundle(account, kind, &profile.sid).await.unwrap_err();
    assert_eq!(refused.api_error().map(|error| error.http_status), Some(409));
    client
        .assign_to_bundle(account, kind, &profile.sid, &address.sid)
        .await?;
    let evaluation = client
        .evaluate_bundle(account, kind, &profile.sid, SECONDARY_CUSTOMER_PROFILE_POLICY_SID)
        .await?;
    assert_eq!(evaluation.status, EvaluationStatus::Compliant, "{evaluation:?}");
    assert!(evaluation.sid.starts_with("EL") && evaluation.results.iter().all(|result| result.passed));
    let submitted = client.submit_bundle(account, kind, &profile.sid).await?;
    assert_eq!(submitted.status, BundleStatus::PendingReview);
    let fetched = client.fetch_bundle(account, kind, &profile.sid).await?;
    assert_eq!(fetched.status, BundleStatus::TwilioApproved);

    let kind = BundleKind::TrustProduct;
    let product = client
        .create_bundle(account, kind, &bundle("Acme A2P", A2P_TRUST_PRODUCT_POLICY_SID, None))
        .await?;
    let messaging_profile = client
        .create_end_user(
            account,
            &NewEndUser {
                end_user_type: "us_a2p_messaging_profile_information".into(),
                friendly_name: "Acme messaging profile".into(),
                attributes: serde_json::json!({"company_type": "private"}),
            },
        )
        .await?;
    client
        .assign_to_bundle(account, kind, &product.sid, &messaging_profile.sid)
        .await?;
    let evaluation = client
        .evaluate_bundle(account, kind, &product.sid, A2P_TRUST_PRODUCT_POLICY_SID)
        .await?;
    assert_eq!(evaluation.status, EvaluationStatus::Noncompliant);
    let assignment = client
        .assign_to_bundle(account, kind, &product.sid, &profile.sid)
        .await?;
    assert_eq!(assignment.bundle_sid.as_deref(), Some(product.sid.as_str()));
    let evaluation = client
        .evaluate_bundle(account, kind, &product.sid, A2P_TRUST_PRODUCT_POLICY_SID)
        .await?;
    assert_eq!(evaluation.status, EvaluationStatus::Compliant);
    assert_eq!(
        client.submit_bundle(account, kind, &product.sid).await?.status,
        BundleStatus::PendingReview
    );
    Ok((profile.sid, product.sid))
}

fn brand(profile: &str, product: &str) -> NewBrandRegistration {
    NewBrandRegistration {
        customer_profile_bundle_sid: profile.into(),
        a2p_profile_bundle_sid: product.into(),
        brand_type: BrandType::Standard,
        mock: false,
        skip_automatic_sec_vet: false,
    }
}

fn campaign(brand_sid: &str) -> NewCampaign {
    NewCampaign {
        brand_registration_sid: brand_sid.into(),
        description: "Order updates and delivery notifications for Acme customers".into(),
        message_flow: "Customers opt in at checkout on acme.example.com by ticking a box".into(),
        message_samples: vec![
            "Acme: your order 1234 has shipped. Reply STOP to opt out.".into(),
            "Acme: your order 1234 was delivered. Reply STOP to opt out.".into(),
        ],
        us_app_to_person_usecase: "ACCOUNT_NOTIFICATION".into(),
        has_embedded_links: false,
        has_embedded_phone: false,
        opt_in_message: Some("Acme: you are subscribed to order updates.".into()),
        opt_out_message: Some("Acme: you are unsubscribed. No more messages.".into()),
        help_message: Some("Acme: help at support@acme.example.com.".into()),
        opt_in_keywords: vec!["START".into()],
        opt_out_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into()],
        help_keywords: vec!["HELP".into()],
    }
}

async fn subaccount(client: &TwilioClient) -> anyhow::Result<Subaccount> {
    Ok(client.create_subaccount(&main_account(), "Tenant t1").await?)
}

#[tokio::test]
async fn a_subaccount_is_created_verified_and_sends_messages() -> anyhow::Result<()> {
    let (sim, client) = start(config(BrandOutcome::Approve)).await?;
    let sub = subaccount(&client).await?;
    assert!(sub.sid.starts_with("AC") && sub.sid.len() == 34 && sub.sid != DEFAULT_ACCOUNT_SID);
    assert_eq!(
        (sub.friendly_name.as_str(), &sub.status),
        ("Tenant t1", &AccountStatus::Active)
    );
    assert!(
        !format!("{sub:?}").contains(sub.auth_token.expose_secret()),
        "the token must not print"
    );

    let fetched = client.fetch_account(&sub.account(), &sub.sid).await?;
    assert_eq!(fetched.sid, sub.sid);
    assert_eq!(fetched.owner_account_sid.as_deref(), Some(DEFAULT_ACCOUNT_SID));
    assert_eq!(client.fetch_account(&main_account(), &sub.sid).await?.sid, sub.sid);

    let wrong = TwilioAccount::new(sub.sid.clone(), "not-the-token".to_owned());
    assert!(matches!(
        client.fetch_account(&wrong, &sub.sid).await,
        Err(AccountOpError::InvalidCredentials { .. })
    ));
    let nested = client.create_subaccount(&sub.account(), "nested").await.unwrap_err();
    assert_eq!(nested.api_error().and_then(|error| error.code), Some(20403));

    // The subaccount sends through the ordinary Messages endpoint with its own credentials.
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("To", "+14155550100"), ("From", "+14155550199"), ("Body", "hello")])
        .finish();
    let outcome = client.create_message(&sub.account(), form.clone()).await;
    assert!(matches!(outcome, CreateOutcome::Accepted { .. }), "{outcome:?}");
    assert!(matches!(
        client.create_message(&wrong, form).await,
        CreateOutcome::Rejected(_)
    ));

    let stats = sim.shutdown().await?;
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.onboarding.subaccounts, 1);
    assert_eq!(stats.onboarding.account_fetches, 2);
    Ok(())
}

#[tokio::test]
async fn the_whole_onboarding_walk_ends_with_a_verified_campaign() -> anyhow::Result<()> {
    let (sim, client) = start(config(BrandOutcome::Approve)).await?;
    let (callback_url, mut callbacks) = receiver().await?;
    let sub = subaccount(&client).await?;
    let account = sub.account();
    let (profile, product) = submitted_bundles(&client, &account, Some(callback_url.clone())).await?;

    // Brand: pending at first, approved after the review delay, with a signed callback.
    let registered = client
        .create_brand_registration(&account, &brand(&profile, &product))
        .await?;
    assert_eq!(registered.status, BrandStatus::Pending);
    assert!(registered.sid.starts_with("BN") && registered.brand_score.is_none());
    let pending = client.fetch_brand_registration(&account, &registered.sid).await?;
    assert_eq!(pending.status, BrandStatus::Pending);
    let (signature, params) = tokio::time::timeout(Duration::from_secs(5), callbacks.recv())
        .await
        .context("no brand callback within 5 s")?
        .context("receiver closed")?;
    let signature = signature.context("the callback is not signed")?;
    assert!(verify(
        sub.auth_token.expose_secret(),
        &callback_url,
        &params,
        &signature
    ));
    assert!(!verify(DEFAULT_AUTH_TOKEN, &callback_url, &params, &signature));
    let params: HashMap<String, String> = params.into_iter().collect();
    assert_eq!(params["BrandRegistrationSid"], registered.sid);
    assert_eq!(params["BrandStatus"], "APPROVED");
    assert_eq!(params["AccountSid"], sub.sid);
    let approved = client.fetch_brand_registration(&account, &registered.sid).await?;
    assert_eq!(approved.status, BrandStatus::Approved);
    assert_eq!(approved.brand_score, Some(80));
    assert!(approved.tcr_id.is_some() && approved.failure_reason.is_none());

    // Numbers: search in an area code, buy one, and it is no longer offered.
    let found = client
        .search_available_numbers(&account, &NumberSearch::local("US", 212))
        .await?;
    assert_eq!(found.len(), 50);
    assert!(found.iter().all(|number| {
        number.phone_number.as_str().starts_with("+1212555")
            && number.phone_number.as_str().len() == 12
            && number.capabilities.sms
    }));
    let wanted = NumberSearch {
        contains: Some("0142".into()),
        ..NumberSearch::local("US", 212)
    };
    let found = client.search_available_numbers(&account, &wanted).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].phone_number.as_str(), "+12125550142");
    assert_eq!(found[0].friendly_name, "(212) 555-0142");
    let bought = client
        .buy_number(
            &account,
            &NewIncomingNumber {
                phone_number: found[0].phone_number.clone(),
                sms_url: Some("https://acme.example.com/inbound".into()),
                sms_method: Some("POST".into()),
                status_callback: None,
                friendly_name: Some("Acme main".into()),
            },
        )
        .await?;
    assert!(bought.sid.starts_with("PN"));
    assert_eq!(
        (bought.phone_number.as_str(), bought.friendly_name.as_str()),
        ("+12125550142", "Acme main")
    );
    assert!(client.search_available_numbers(&account, &wanted).await?.is_empty());
    let again = NewIncomingNumber {
        phone_number: bought.phone_number.clone(),
        sms_url: None,
        sms_method: None,
        status_callback: None,
        friendly_name: None,
    };
    let refused = client.buy_number(&account, &again).await.unwrap_err();
    assert_eq!(refused.api_error().and_then(|error| error.code), Some(21422));

    // Messaging Service with the number, then the campaign.
    let service = client
        .create_messaging_service(
            &account,
            &NewMessagingService {
                friendly_name: "Acme notifications".into(),
                inbound_request_url: Some("https://acme.example.com/inbound".into()),
                status_callback: Some("https://acme.example.com/status".into()),
            },
        )
        .await?;
    assert!(service.sid.starts_with("MG"));
    let added = client
        .add_service_phone_number(&account, &service.sid, &bought.sid)
        .await?;
    assert_eq!(
        (added.sid.as_str(), added.phone_number.as_str()),
        (bought.sid.as_str(), "+12125550142")
    );
    assert_eq!(added.service_sid.as_deref(), Some(service.sid.as_str()));
    let registered_campaign = client
        .create_campaign(&account, &service.sid, &campaign(&approved.sid))
        .await?;
    assert!(registered_campaign.sid.starts_with("QE"));
    assert_eq!(registered_campaign.campaign_status, CampaignStatus::InProgress);
    let verified = client
        .fetch_campaign(&account, &service.sid, &registered_campaign.sid)
        .await?;
    assert_eq!(verified.campaign_status, CampaignStatus::Verified);
    assert_eq!(verified.brand_registration_sid.as_deref(), Some(approved.sid.as_str()));
    assert!(verified.campaign_id.is_some());
    assert_eq!(verified.rate_limits.context("no rate limits")?["att"]["tpm"], 4_500);
    let second = client
        .create_campaign(&account, &service.sid, &campaign(&approved.sid))
        .await
        .unwrap_err();
    assert_eq!(second.api_error().map(|error| error.http_status), Some(409));

    // The tenant's first message, from its own number with its own credentials.
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("To", "+14155550100"),
            ("MessagingServiceSid", service.sid.as_str()),
            ("Body", "Acme: your order 1234 has shipped."),
        ])
        .finish();
    assert!(matches!(
        client.create_message(&account, form).await,
        CreateOutcome::Accepted { .. }
    ));

    let stats = sim.shutdown().await?;
    let onboarding = stats.onboarding;
    assert_eq!((onboarding.customer_profiles, onboarding.trust_products), (1, 1));
    assert_eq!(
        (
            onboarding.end_users,
            onboarding.supporting_documents,
            onboarding.addresses
        ),
        (3, 2, 1)
    );
    assert_eq!((onboarding.entity_assignments, onboarding.evaluations), (6, 4));
    assert_eq!(onboarding.bundles_submitted, 2);
    assert_eq!(
        (
            onboarding.brand_registrations,
            onboarding.brands_approved,
            onboarding.brand_callbacks
        ),
        (1, 1, 1)
    );
    assert_eq!((onboarding.number_searches, onboarding.numbers_purchased), (3, 1));
    assert_eq!(
        (
            onboarding.messaging_services,
            onboarding.service_phone_numbers,
            onboarding.campaigns
        ),
        (1, 1, 1)
    );
    assert_eq!(onboarding.rejected_by_code.get("20409"), Some(&2));
    assert_eq!(onboarding.rejected_by_code.get("21422"), Some(&1));
    assert_eq!(stats.callbacks_sent, 1);
    Ok(())
}

#[tokio::test]
async fn a_failed_brand_shows_its_reason_and_gets_no_campaign() -> anyhow::Result<()> {
    let reason = "The business registration number does not match the business name".to_owned();
    let mut config = config(BrandOutcome::Fail { reason: reason.clone() });
    let (callback_url, mut callbacks) = receiver().await?;
    config.onboarding.brand_status_callback = Some(callback_url.clone());
    let (sim, client) = start(config).await?;
    let account = main_account();
    let (profile, product) = submitted_bundles(&client, &account, None).await?;
    let service = client
        .create_messaging_service(
            &account,
            &NewMessagingService {
                friendly_name: "Acme".into(),
                inbound_request_url: None,
                status_callback: None,
            },
        )
        .await?;
    let registered = client
        .create_brand_registration(&account, &brand(&profile, &product))
        .await?;
    let early = client
        .create_campaign(&account, &service.sid, &campaign(&registered.sid))
        .await
        .unwrap_err();
    assert_eq!(early.api_error().and_then(|error| error.code), Some(20409));

    let (signature, params) = tokio::time::timeout(Duration::from_secs(5), callbacks.recv())
        .await
        .context("no brand callback within 5 s")?
        .context("receiver closed")?;
    assert!(verify(
        DEFAULT_AUTH_TOKEN,
        &callback_url,
        &params,
        &signature.context("unsigned")?
    ));
    let params: HashMap<String, String> = params.into_iter().collect();
    assert_eq!(
        (params["BrandStatus"].as_str(), &params["FailureReason"]),
        ("FAILED", &reason)
    );

    let failed = client.fetch_brand_registration(&account, &registered.sid).await?;
    assert_eq!(failed.status, BrandStatus::Failed);
    assert_eq!(failed.failure_reason.as_ref(), Some(&reason));
    assert_eq!(failed.errors.len(), 1);
    assert!(failed.brand_score.is_none() && failed.tcr_id.is_none());
    let refused = client
        .create_campaign(&account, &service.sid, &campaign(&registered.sid))
        .await
        .unwrap_err();
    assert!(!refused.is_retryable() && !refused.is_unknown());
    let stats = sim.shutdown().await?;
    assert_eq!(
        (stats.onboarding.brands_failed, stats.onboarding.brands_approved),
        (1, 0)
    );
    Ok(())
}

fn code(error: &AccountOpError) -> Option<u32> {
    error.api_error().and_then(|error| error.code)
}

#[tokio::test]
async fn invalid_requests_are_permanent_errors_with_twilios_codes() -> anyhow::Result<()> {
    let (sim, client) = start(config(BrandOutcome::Approve)).await?;
    let account = main_account();
    let kind = BundleKind::CustomerProfile;

    // A missing (empty) parameter: 400, 20001, Twilio's message naming it.
    let mut missing_email = bundle("Acme", SECONDARY_CUSTOMER_PROFILE_POLICY_SID, None);
    missing_email.email = String::new();
    let error = client.create_bundle(&account, kind, &missing_email).await.unwrap_err();
    let api = error.api_error().context("not a refusal")?;
    assert_eq!((api.http_status, api.code), (400, Some(20001)));
    assert_eq!(
        api.message.as_deref(),
        Some("Missing required parameter Email in the post body")
    );
    assert!(api.more_info.as_deref().is_some_and(|url| url.ends_with("/20001")));
    assert!(!error.is_retryable() && !error.is_unknown());

    let bad_policy = bundle("Acme", "RN123", None);
    assert_eq!(
        code(&client.create_bundle(&account, kind, &bad_policy).await.unwrap_err()),
        Some(20001)
    );
    let bad_callback = bundle("Acme", SECONDARY_CUSTOMER_PROFILE_POLICY_SID, Some("ftp://x".into()));
    assert_eq!(
        code(&client.create_bundle(&account, kind, &bad_callback).await.unwrap_err()),
        Some(20001)
    );

    // Unknown objects: 404 in the path, 400 in a parameter.
    let unknown = format!("BU{}", "0".repeat(32));
    let error = client.fetch_bundle(&account, kind, &unknown).await.unwrap_err();
    assert!(error.is_not_found() && code(&error) == Some(20404));
    let profile = client
        .create_bundle(
            &account,
            kind,
            &bundle("Acme", SECONDARY_CUSTOMER_PROFILE_POLICY_SID, None),
        )
        .await?;
    let error = client
        .assign_to_bundle(&account, kind, &profile.sid, &format!("IT{}", "0".repeat(32)))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(20001));
    // A bundle of another account is not found either.
    let sub = subaccount(&client).await?;
    assert!(
        client
            .fetch_bundle(&sub.account(), kind, &profile.sid)
            .await
            .unwrap_err()
            .is_not_found()
    );
    // A brand from a draft bundle is refused (409), so is one naming a profile as its trust product (400).
    let error = client
        .create_brand_registration(&account, &brand(&profile.sid, &profile.sid))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(20409), "{error}");
    let error = client
        .create_brand_registration(&account, &brand(&unknown, &profile.sid))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(20001), "{error}");

    // Campaign fields are checked against Twilio's lengths.
    let service = client
        .create_messaging_service(
            &account,
            &NewMessagingService {
                friendly_name: "Acme".into(),
                inbound_request_url: None,
                status_callback: None,
            },
        )
        .await?;
    let brand_sid = format!("BN{}", "0".repeat(32));
    let mut short = campaign(&brand_sid);
    short.description = "too short".into();
    let mut one_sample = campaign(&brand_sid);
    one_sample.message_samples.truncate(1);
    let mut tiny_sample = campaign(&brand_sid);
    tiny_sample.message_samples[1] = "hi".into();
    let mut long_flow = campaign(&brand_sid);
    long_flow.message_flow = "x".repeat(2_049);
    for (field, request) in [
        ("Description", short),
        ("MessageSamples", one_sample),
        ("MessageSamples", tiny_sample),
        ("MessageFlow", long_flow),
    ] {
        let error = client
            .create_campaign(&account, &service.sid, &request)
            .await
            .unwrap_err();
        let api = error.api_error().context("not a refusal")?;
        assert_eq!((api.http_status, api.code), (400, Some(20001)), "{field}");
        assert!(
            api.message.as_deref().is_some_and(|message| message.contains(field)),
            "{api:?}"
        );
    }
    // A well-formed campaign naming an unknown brand.
    let error = client
        .create_campaign(&account, &service.sid, &campaign(&brand_sid))
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(20001));

    // Numbers: a bad area code, a number the simulator does not sell.
    let search = NumberSearch::local("US", 123);
    assert_eq!(
        code(&client.search_available_numbers(&account, &search).await.unwrap_err()),
        Some(20001)
    );
    let real = NewIncomingNumber {
        phone_number: PhoneNumber::parse("+14155551234")?,
        sms_url: None,
        sms_method: None,
        status_callback: None,
        friendly_name: None,
    };
    assert_eq!(
        code(&client.buy_number(&account, &real).await.unwrap_err()),
        Some(21422)
    );
    let unknown_number = format!("PN{}", "0".repeat(32));
    let error = client
        .add_service_phone_number(&account, &service.sid, &unknown_number)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(20001));

    // The raw error body is Twilio's JSON error.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/Services", sim.base_url()))
        .basic_auth(DEFAULT_ACCOUNT_SID, Some(DEFAULT_AUTH_TOKEN))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await?;
    assert_eq!(body["code"], 20001);
    assert_eq!(body["status"], 400);
    assert_eq!(
        body["message"],
        "Missing required parameter FriendlyName in the post body"
    );
    assert_eq!(body["more_info"], "https://www.twilio.com/docs/errors/20001");

    let stats = sim.shutdown().await?;
    assert!(
        stats
            .onboarding
            .rejected_by_code
            .get("20001")
            .is_some_and(|count| *count >= 10)
    );
    assert_eq!(stats.received, 0, "the Messages counters stay apart");
    Ok(())
}

#[tokio::test]
async fn the_unavailable_switch_and_the_first_requests_give_transient_errors() -> anyhow::Result<()> {
    let mut config = config(BrandOutcome::Approve);
    config.onboarding.unavailable_for_first = 2;
    let (sim, client) = start(config).await?;
    for _ in 0..2 {
        let error = client.create_subaccount(&main_account(), "t1").await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert!(matches!(&error, AccountOpError::Transient { reason, .. } if reason == "TWILIO_20503"));
    }
    let sub = subaccount(&client).await?;

    sim.set_onboarding_unavailable(true);
    let error = client.fetch_account(&sub.account(), &sub.sid).await.unwrap_err();
    assert!(error.is_retryable());
    let error = client
        .search_available_numbers(&sub.account(), &NumberSearch::local("US", 415))
        .await
        .unwrap_err();
    assert!(error.is_retryable());
    // The Messages endpoint is not affected.
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("To", "+14155550100"), ("From", "+14155550199"), ("Body", "hi")])
        .finish();
    assert!(matches!(
        client.create_message(&sub.account(), form).await,
        CreateOutcome::Accepted { .. }
    ));
    sim.set_onboarding_unavailable(false);
    assert_eq!(client.fetch_account(&sub.account(), &sub.sid).await?.sid, sub.sid);

    // A connection that never opens is transient too.
    let closed = TwilioClient::new(&TwilioClientSettings {
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(1),
        ..TwilioClientSettings::all_at("http://127.0.0.1:9")
    })?;
    let error = closed.create_subaccount(&main_account(), "t1").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");

    let stats = sim.shutdown().await?;
    assert_eq!(stats.onboarding.unavailable, 4);
    assert_eq!(stats.onboarding.rejected_by_code.get("20503"), Some(&4));
    assert_eq!(stats.onboarding.subaccounts, 1);
    Ok(())
}
