//! `switchyard explain`: where a packet would go, from the plan.

use crate::cli::ExplainArgs;
use crate::node::NodeSetup;
use crate::source::Manifests;
use anyhow::Context as _;
use switchyard_core::IpFamily;

pub async fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let path = args
        .node
        .manifests
        .as_ref()
        .context("explain needs --manifests (it plans offline)")?;
    let manifests = Manifests::load(path)?;
    let setup = NodeSetup::resolve(&args.node, Some(&manifests)).await?;
    let (dst, dport, proto) = args.to;
    if IpFamily::of(&args.from) != IpFamily::of(&dst) {
        anyhow::bail!(
            "--from {} and --to {dst} are of different address families",
            args.from
        );
    }
    let family = IpFamily::of(&dst);
    let plan = setup
        .plans(&manifests)
        .into_iter()
        .find(|p| p.family == family)
        .with_context(|| {
            format!(
                "node {} has no {family} plan: its Node object lists no {family} address or pod CIDR",
                setup.node_name
            )
        })?;
    let answer = switchyard_core::explain(&plan, args.from, dst, dport, proto);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{answer}");
    }
    Ok(())
}
