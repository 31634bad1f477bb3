import * as pulumi from '@pulumi/pulumi';

/** One resource registered with the mock engine (components included). */
export interface RecordedResource {
  type: string;
  name: string;
  /**
   * The inputs as the engine received them. Secret values arrive wrapped as
   * `{ [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value }`:
   * test with `pulumi.runtime.isRpcSecret(v)`, unwrap with `unwrapRpcSecret(v)`.
   */
  inputs: any;
  /** false for component resources. */
  custom: boolean | undefined;
  /** The provider reference, when one was given. */
  provider: string | undefined;
}

export interface MockRecorder {
  /** Every resource registered since setupMocks() (or the last reset()), in order. */
  resources: RecordedResource[];
  /** Forgets the recorded resources. */
  reset(): void;
  /** The recorded resources of one type token (e.g. "kubernetes:core/v1:Secret"). */
  ofType(type: string): RecordedResource[];
  /** The one recorded resource with this type and name; throws if there is none. */
  find(type: string, name: string): RecordedResource;
}

export interface MockOptions {
  /** Known invokes by token; any other invoke throws. */
  calls?: Record<string, (inputs: any) => Record<string, any> | Promise<Record<string, any>>>;
  project?: string;
  stack?: string;
  /** Default false (an update: outputs resolve). */
  preview?: boolean;
}

/**
 * Installs Pulumi's mock engine (no CLI needed) with one recording mock:
 * every registered resource is recorded; newResource answers id `${name}-id`
 * and state = inputs; an invoke that is not in `opts.calls` THROWS, so a test
 * never silently depends on a data source it did not mock.
 *
 * Await it before importing the code under test (Pulumi reads its settings when
 * resources are constructed). Calling it again replaces the previous mocks.
 */
export async function setupMocks(opts: MockOptions = {}): Promise<MockRecorder> {
  const resources: RecordedResource[] = [];
  const calls = opts.calls ?? {};
  await pulumi.runtime.setMocks(
    {
      newResource: (args: pulumi.runtime.MockResourceArgs) => {
        resources.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom, provider: args.provider });
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args: pulumi.runtime.MockCallArgs) => {
        const known = calls[args.token];
        if (!known) throw new Error(`pulumi-mocks: unexpected invoke ${args.token} (add it to setupMocks({ calls }) if the code under test should call it)`);
        return known(args.inputs);
      },
    },
    opts.project ?? 'project',
    opts.stack ?? 'stack',
    opts.preview ?? false,
  );
  return {
    resources,
    reset: () => {
      resources.length = 0;
    },
    ofType: (type) => resources.filter((r) => r.type === type),
    find: (type, name) => {
      const r = resources.find((x) => x.type === type && x.name === name);
      if (!r) throw new Error(`pulumi-mocks: no ${type} named "${name}" was registered (got: ${resources.map((x) => `${x.type} ${x.name}`).join(', ') || 'none'})`);
      return r;
    },
  };
}

/** The value of an Output (under mocks, outside preview). */
export function outputValue<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise<T>((resolve) => o.apply((v) => resolve(v)));
}
