"""iCIMS models without a server: events, Link headers, connection configuration, signing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from app.admin.tenants_file import ConnectionSpec, TenantsFile, TenantSpec, apply_tenants
from app.schemas.icims import (
    AssessmentEvent,
    Link,
    dedupe_content,
    earlier_threads,
    linked_id,
    parse_event,
    parse_link_header,
    subjects,
    thread,
)
from app.schemas.icims_config import (
    ConfigError,
    IcimsConfig,
    check,
    check_link_template,
    render_link,
)
from app.services import Services
from app.sources import icims as senders
from app.verifiers import VerificationError
from app.verifiers import icims as icims_verifier
from tests.support.icims import (
    HMAC_SECRET,
    HMAC_USER,
    SECRET_VALUES,
    icims_hmac_headers,
    icims_options,
    icims_secrets,
    payload,
)


def test_each_event_type_parses_into_its_model() -> None:
    for event_type in (
        "AssessmentEvent",
        "WorkFlowStatusChangeEvent",
        "JobPostToWebEvent",
        "ViewJobWebPostEvent",
        "JobUnpostToWebEvent",
        "OnboardPortalTaskEvent",
    ):
        event = parse_event(payload(event_type))
        assert type(event).__name__ == event_type
        assert event.customer_id == "1234"


def test_missing_documented_field_is_named() -> None:
    body = payload("AssessmentEvent")
    del body["returnUrl"]
    with pytest.raises(ValidationError, match="returnUrl"):
        parse_event(body)


def test_links_array_keeps_good_entries_only() -> None:
    body = payload("AssessmentEvent")
    body["links"] = [{"rel": "user", "url": "https://x/1"}, 5, {"title": "no url"}]
    event = parse_event(body)
    assert isinstance(event, AssessmentEvent)
    assert [link.url for link in event.links] == ["https://x/1"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'http://a/customers/1/jobs/9;rel="job";title="Job Profile",',
            [("http://a/customers/1/jobs/9", "job", "Job Profile")],
        ),
        (
            '<https://a/p/1>; rel="user"; title="Posting User, Lead", <https://a/j/2>;rel=job',
            [("https://a/p/1", "user", "Posting User, Lead"), ("https://a/j/2", "job", None)],
        ),
        ("", []),
        (",,", []),
    ],
)
def test_link_header_in_icims_and_rfc_forms(
    header: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    assert [(lk.url, lk.rel, lk.title) for lk in parse_link_header(header)] == expected


def test_link_rendering_encodes_values() -> None:
    event = parse_event(payload("AssessmentEvent"))
    link = render_link(
        "https://a.example/{customerId}/{token}?back={returnUrl}", event, token="t/k", record_id="r"
    )
    assert link == (
        "https://a.example/1234/t%2Fk?back="
        "https%3A%2F%2Fcareers.example.com%2Fjobs%2F1209%2Freturn%3Fstep%3D2%26lang%3Den"
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("https://a.example/{token.__class__}", "unknown placeholder"),
        ("https://a.example/{password}", "unknown placeholder"),
        ("https://a.example/{token", "expected '}'"),
        ("/relative/{token}", "absolute"),
        ("javascript:alert(1)", "absolute"),
    ],
)
def test_link_templates_are_checked(template: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        check_link_template(template, where="t")


def _config_error(options: dict[str, Any], secrets: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        IcimsConfig.parse(options, secrets)
    message = str(caught.value)
    assert not any(secret in message for secret in SECRET_VALUES)
    return message


def test_configuration_errors_name_the_setting_never_the_value() -> None:
    base, secrets = icims_options(), icims_secrets()
    assert "link_template" in _config_error(icims_options(events={"AssessmentEvent": {}}), secrets)
    assert "unknown event type" in _config_error(
        icims_options(events={"RemoteLoginEvent": {}}), secrets
    )
    assert "answered 200" in _config_error(
        icims_options(events={"JobUnpostToWebEvent": {"link_template": "https://a/{token}"}}),
        secrets,
    )
    assert "oauth_client_id" in _config_error(
        {k: v for k, v in base.items() if k != "oauth_client_id"}, secrets
    )
    assert "basic_password" in _config_error(
        base, {k: v for k, v in secrets.items() if k != "basic_password"}
    )
    # A secret typed into the wrong place is reported by name only.
    assert "hmac_secrets" in _config_error(base, secrets | {"hmac_secrets": HMAC_SECRET})
    assert "typo_option" in _config_error(base | {"typo_option": 1}, secrets)
    assert "no authentication" in _config_error({"events": {}}, {})
    validation = {"required": {"people": ["email"]}}
    needs_api = icims_options()
    needs_api["events"]["WorkFlowStatusChangeEvent"] = {"validation": validation}
    assert "options.api" in _config_error(needs_api, secrets)
    # A job event names a job only; an onboarding task the new hire and its job, no workflow.
    not_here = icims_options()
    not_here["events"]["JobUnpostToWebEvent"] = {"validation": validation}
    assert "validation: people not available" in _config_error(not_here, secrets)
    not_here = icims_options()
    not_here["events"]["OnboardPortalTaskEvent"]["validation"] = {
        "package_field": "rcf1",
        "package_profile": "applicantworkflows",
        "packages": {"p": {}},
    }
    assert "validation: applicantworkflows not available" in _config_error(not_here, secrets)
    no_status = icims_options()
    no_status["events"]["JobPostToWebEvent"]["validation"] = {
        "status_packages": {"A": "p"},
        "packages": {"p": {}},
    }
    assert "no status here" in _config_error(no_status, secrets)
    wrong_answer = icims_options()
    wrong_answer["events"]["AssessmentEvent"]["validation"] = {"on_invalid": "ignore"}
    assert "on_invalid" in _config_error(wrong_answer, secrets)
    both = {"status_packages": {"A": "p"}, "package_field": "rcf1", "packages": {"p": {}}}
    bad_rules = icims_options()
    bad_rules["events"]["WorkFlowStatusChangeEvent"] = {"validation": both}
    assert "not both" in _config_error(bad_rules, secrets)


def test_a_jobs_postings_and_unpostings_are_one_thread() -> None:
    post = parse_event(senders.icims_sample("JobPostToWebEvent"))
    unpost = parse_event(senders.icims_sample("JobUnpostToWebEvent"))
    other_job = parse_event(senders.icims_sample("JobPostToWebEvent", system_id="7"))
    edit = parse_event(senders.icims_sample("ViewJobWebPostEvent"))
    assert thread(post) == thread(unpost) != thread(other_job)
    assert dedupe_content(post) != dedupe_content(unpost)
    # Unpostings recorded when they had a thread of their own are still read.
    assert earlier_threads(post) == earlier_threads(unpost) != (thread(post),)
    # Edits follow each other in a thread of their own: a posting is no edit.
    assert thread(edit) not in (thread(post), None)
    for once in ("AssessmentEvent", "OnboardPortalTaskEvent"):
        assert thread(parse_event(senders.icims_sample(once))) is None


def test_a_job_edit_is_told_apart_by_its_user() -> None:
    body = senders.icims_sample("ViewJobWebPostEvent")
    key = dedupe_content(parse_event(body))
    assert dedupe_content(parse_event({**body, "userId": "122"})) != key
    assert dedupe_content(parse_event(dict(body))) == key
    # The user who posts a job is not part of the posting.
    post = senders.icims_sample("JobPostToWebEvent")
    assert dedupe_content(parse_event({**post, "userId": "122"})) == dedupe_content(
        parse_event(post)
    )


def test_only_job_edit_has_a_retry_window_by_default() -> None:
    config = IcimsConfig.parse(icims_options(), icims_secrets())
    assert config.dedupe_window_s("ViewJobWebPostEvent") == 600
    for event_type in ("WorkFlowStatusChangeEvent", "JobPostToWebEvent", "JobUnpostToWebEvent"):
        assert config.dedupe_window_s(event_type) == 0
    options = icims_options()
    options["events"]["ViewJobWebPostEvent"]["dedupe_window_s"] = 120
    assert IcimsConfig.parse(options, icims_secrets()).dedupe_window_s("ViewJobWebPostEvent") == 120


def test_a_window_on_an_event_that_happens_once_is_refused_when_loaded() -> None:
    options = icims_options()
    options["events"]["AssessmentEvent"]["dedupe_window_s"] = 3600
    with pytest.raises(ValueError, match=r"AssessmentEvent\.dedupe_window_s"):
        check(options, icims_secrets())
    options["events"]["AssessmentEvent"]["dedupe_window_s"] = 0
    check(options, icims_secrets())


def test_an_onboard_portal_task_reads_its_job_from_a_job_link() -> None:
    api = "https://api.icims.com/customers/1234"
    body = {**payload("OnboardPortalTaskEvent"), "links": []}
    assert subjects(parse_event(body)) == {"person": "2468"}
    job = {"rel": "Job", "url": f"{api}/jobs/1209/"}
    assert subjects(parse_event({**body, "links": [job]})) == {"person": "2468", "job": "1209"}
    header = parse_link_header(f'{api}/jobs/77;rel="job";title="Job Profile",')
    assert subjects(parse_event(body), header) == {"person": "2468", "job": "77"}
    # The array wins over the header; a job link that names no job is no job.
    assert subjects(parse_event({**body, "links": [job]}), header)["job"] == "1209"
    assert linked_id([Link(rel="job", url=f"{api}/people/2468")], "job", "jobs") is None
    assert linked_id([Link(rel="person", url=f"{api}/jobs/1")], "job", "jobs") is None
    assert linked_id([Link(rel="job", url="https://x/jobs/%20")], "job", "jobs") is None


async def test_tenants_file_refuses_a_broken_icims_config(services: Services) -> None:
    spec = TenantsFile(
        tenant=[
            TenantSpec(
                slug="acme",
                name="Acme",
                connection=[
                    ConnectionSpec(
                        source="icims",
                        account="1234",
                        options=icims_options(events={"AssessmentEvent": {}}),
                        secrets=icims_secrets(),
                    )
                ],
            )
        ]
    )
    with pytest.raises(
        ValueError, match=r"tenant 'acme', icims connection 'default'.*link_template"
    ):
        await apply_tenants(spec, engine=services.engine, cipher=services.cipher)


def test_production_signer_agrees_with_the_independent_one() -> None:
    body = b'{"customerId":"1234"}'
    at = datetime(2017, 10, 18, 14, 53, 40, tzinfo=UTC)
    mine = icims_hmac_headers(body, date="2017-10-18T14:53:40+0000")
    theirs = senders.icims_hmac_headers(
        url="http://hirehook.test/v1/icims/events",
        body=body,
        user=HMAC_USER,
        secret=HMAC_SECRET,
        now=at,
    )
    assert theirs == mine


# A real outbound iCIMS request, logged by iCIMS staff (developer-community comment/1541).
REAL_BODY = (
    b'{"systemId":"244","customerId":"6268","links":[{"rel":"user","title":"Posting User",'
    b'"url":"https://api.icims.com/customers/6268/people/244"}],"eventType":"RemoteLoginEvent",'
    b'"returnUrl":"https://i9everifysandbox.icims.com","userId":"244"}'
)
REAL_HEADERS = {
    "link": 'https://api.icims.com/customers/6268/people/244;rel="user";title="Posting User",',
    "x-icims-date": "2017-10-18T14:53:40+0000",
    "x-icims-content-sha256": "b5ce232084d42376299a7d4d4f1ac4f03b699012074a07d11aa577c9fef28233",
    "content-type": "application/json",
    "host": "qa.i9complete.com",
    "authorization": (
        "x-icims-v1-hmac-sha256 user=icimsremotelogin_i9everifysandbox,"
        "signedheaders=content-type;host;x-icims-content-sha256;x-icims-date,"
        "signature=b0d79e9f65b6bb16515ac82bd415aec7f5ef655aef94b7f66a6a2e0959680733"
    ),
}


def test_a_real_icims_hmac_request_gets_as_far_as_the_unknown_secret() -> None:
    """Header format, date format and body hash checked against iCIMS's own logged request.

    The body hash is over the plain JSON (that request was not compressed); only the
    signature, whose secret is not public, cannot be checked.
    """
    auth = icims_verifier.parse_hmac_authorization(REAL_HEADERS["authorization"])
    assert auth.user == "icimsremotelogin_i9everifysandbox"
    assert auth.header_names == list(icims_verifier.SIGNED_HEADERS)
    assert len(REAL_BODY) == 237  # its Content-Length
    when = icims_verifier.parse_date(REAL_HEADERS["x-icims-date"]).timestamp()
    with pytest.raises(VerificationError, match="no HMAC signature matched"):
        icims_verifier.verify_hmac(
            method="POST",
            path="/icims/remotelogin",
            query="",
            headers=REAL_HEADERS,
            bodies=[REAL_BODY],
            secrets=["the secret is not public"],
            now=when + 10,
            tolerance_s=300,
        )
    with pytest.raises(VerificationError, match="does not match the body"):
        icims_verifier.verify_hmac(
            method="POST",
            path="/icims/remotelogin",
            query="",
            headers=REAL_HEADERS,
            bodies=[REAL_BODY + b" "],
            secrets=["x"],
            now=when,
            tolerance_s=300,
        )


def test_a_real_icims_link_header_parses() -> None:
    header = (
        'https://api.icims.com/customers/6271/applicantworkflows/1479;rel="applicantWorkflow";'
        'title="Applicant Workflow",https://api.icims.com/customers/6271/jobs/1181;rel="job";'
        'title="Job Profile",https://api.icims.com/customers/6271/people/1930;rel="person";'
        'title="Person Profile",https://api.icims.com/customers/6271/people/1566;rel="user";'
        'title="Posting User",'
    )
    links = parse_link_header(header)
    assert [link.rel for link in links] == ["applicantWorkflow", "job", "person", "user"]
    assert links[1].url == "https://api.icims.com/customers/6271/jobs/1181"
