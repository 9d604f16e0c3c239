/** Types of the `cluster-key-slot` package (the slot calculation ioredis itself uses). */
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0-16383) of `key`, honouring `{hash tags}`. */
  const calculateSlot: (key: string | Buffer) => number
  export default calculateSlot
}
