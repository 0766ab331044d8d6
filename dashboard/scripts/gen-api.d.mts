/** The OpenAPI document the types are generated from. */
export declare const SPEC: string
/** The generated file (src/api/schema.d.ts). */
export declare const OUTPUT: string
/** The TypeScript text for the OpenAPI document at `spec` (default: SPEC). */
export declare function generate(spec?: string): Promise<string>
